#!/usr/bin/env bash
# `perimeter bench gateway` with the LiteLLM proxy (PyPI `litellm[proxy]`) measured side by side,
# in front of the same stand-in upstream. Needs a venv with LiteLLM:
#   python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'
# Usage: bench/gateway_litellm.sh [LITELLM_VENV] [-- extra `bench gateway` arguments]
set -euo pipefail
VENV=${1:-/tmp/litellm}
shift || true
[ "${1:-}" = "--" ] && shift
UPSTREAM_PORT=${UPSTREAM_PORT:-18431}
LITELLM_PORT=${LITELLM_PORT:-18432}
CONFIG=$(mktemp /tmp/litellm-bench.XXXXXX.yaml)
cat > "$CONFIG" <<YAML
model_list:
  - model_name: upstream-model
    litellm_params:
      model: openai/upstream-model
      api_base: "http://127.0.0.1:${UPSTREAM_PORT}/v1"
      api_key: bench-key
litellm_settings:
  telemetry: false
general_settings:
  # Loopback benchmark only: Perimeter has no API keys yet either, so neither side checks one.
  dangerously_permit_weak_or_unset_master_key: true
YAML
# No network: use the cost map shipped in the package instead of fetching it.
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/litellm" --config "$CONFIG" --host 127.0.0.1 --port "$LITELLM_PORT" \
  --num_workers 1 > /tmp/litellm-bench.log 2>&1 &
PROXY=$!
trap 'kill $PROXY 2>/dev/null || true; rm -f "$CONFIG"' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:${LITELLM_PORT}/health/liveliness" > /dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:${LITELLM_PORT}/health/liveliness" > /dev/null || { echo "LiteLLM did not start; see /tmp/litellm-bench.log" >&2; exit 1; }
target/release/perimeter bench gateway --upstream-port "$UPSTREAM_PORT" \
  --compare "litellm=http://127.0.0.1:${LITELLM_PORT}/v1/chat/completions" "$@"
