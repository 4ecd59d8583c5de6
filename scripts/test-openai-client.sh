#!/usr/bin/env bash
# Runs the OpenAI Python client against a real Perimeter server on a loopback port, over a fresh
# data directory holding the sample corpus. Installs the pinned client into .venv-test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/perimeter}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked -p perimeter-cli)
VENV="$ROOT/.venv-test"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import openai" 2>/dev/null || ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qxF -f "$ROOT/tests/python/requirements.txt"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/tests/python/requirements.txt"
fi

DATA=$(mktemp -d)
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

cd "$ROOT"
"$BIN" --data-dir "$DATA" ingest examples/corpus >/dev/null 2>&1
PERIMETER_LOG=warn "$BIN" --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" &
server=$!
for _ in $(seq 1 240); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "error: server exited during start-up" >&2; exit 1; }
  sleep 0.25
done
echo "openai client compatibility test against 127.0.0.1:$PORT"
"$VENV/bin/python" "$ROOT/tests/python/openai_client_test.py" "http://127.0.0.1:$PORT/v1"
