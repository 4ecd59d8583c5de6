#!/usr/bin/env bash
# Property-based tests of the HTTP API from its own OpenAPI document: schemathesis (pinned in
# tests/python/fuzz-requirements.txt, installed into target/venv-api-fuzz) generates valid and
# invalid requests for every operation in /openapi.json and fails on any 5xx response or any
# response that does not match the document. Runs against a real Perimeter server on a loopback
# port over a fresh data directory holding two documents of the sample corpus.
#
# Bounded to a few minutes on two cores: few examples per operation, answers of at most 8 tokens
# (the embedded model is slow), and no rate limit (429s would only hide requests from the checks).
# No failed-authentication throttle either: the server below has no key, so nothing fails
# authentication today; with keys, the requests schemathesis sends without valid auth would
# soon get 429 auth_throttled instead of 401 and hide the 401 answers from the checks.
# FUZZ_EXAMPLES and FUZZ_SEED override the defaults.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/perimeter}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked -p perimeter-cli)
# Under target/: ignored by git, and removed with the build outputs.
VENV="$ROOT/target/venv-api-fuzz"
REQS="$ROOT/tests/python/fuzz-requirements.txt"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qxF -f "$REQS"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
fi

DATA=$(mktemp -d)
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

cat > "$DATA/perimeter.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"

[generation]
max_tokens = 8
max_tokens_limit = 8

[limits]
requests_per_minute = 0
max_concurrent_requests = 0
auth_failures_per_minute = 0
request_timeout_seconds = 120
TOML

cd "$ROOT"
"$BIN" --config "$DATA/perimeter.toml" --data-dir "$DATA/data" ingest \
  examples/corpus/internal/annual-leave.md examples/corpus/public/clinic-locations.html >/dev/null 2>&1
PERIMETER_LOG=warn "$BIN" --config "$DATA/perimeter.toml" --data-dir "$DATA/data" serve &
server=$!
for _ in $(seq 1 240); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "error: server exited during start-up" >&2; exit 1; }
  sleep 0.25
done

AUTH=()
if [ -n "${PERIMETER_FUZZ_API_KEY:-}" ]; then
  AUTH=(--header "Authorization: Bearer $PERIMETER_FUZZ_API_KEY")
fi

echo "API fuzzing (schemathesis) against 127.0.0.1:$PORT"
# tests/python/fuzz_hooks.py: a known model in generated bodies, so requests reach the pipeline.
PYTHONPATH="$ROOT/tests/python" SCHEMATHESIS_HOOKS=fuzz_hooks "$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --phases coverage,fuzzing \
  --max-examples "${FUZZ_EXAMPLES:-15}" \
  --seed "${FUZZ_SEED:-8}" \
  --workers 1 \
  --request-timeout 120 \
  --suppress-health-check too_slow,filter_too_much \
  --no-shrink \
  "${AUTH[@]}"
kill -0 "$server" 2>/dev/null || { echo "error: the server died during fuzzing" >&2; exit 1; }
