#!/usr/bin/env bash
# `make run`: ingest the sample corpus (a no-op when unchanged), start the server, wait until it
# is ready, print examples to paste, and keep serving until Ctrl-C.
set -euo pipefail
BIN=${1:-target/release/perimeter}
DATA_DIR=${2:-data}
LISTEN=${3:-127.0.0.1:8080}

echo "==> ingesting examples/corpus into $DATA_DIR"
"$BIN" --data-dir "$DATA_DIR" ingest examples/corpus

# A local admin key, made on the first run and reused after: once a key exists, every route but
# /healthz, /readyz and /openapi.json needs one. It lives in $DATA_DIR/admin.key (mode 0600).
KEY_FILE="$DATA_DIR/admin.key"
if [ ! -s "$KEY_FILE" ]; then
  echo "==> creating a local admin key in $KEY_FILE"
  key=$("$BIN" --data-dir "$DATA_DIR" keys create --tenant default --role admin)
  (umask 077 && printf '%s\n' "$key" > "$KEY_FILE")
  chmod 600 "$KEY_FILE"
fi
KEY=$(cat "$KEY_FILE")

echo "==> starting perimeter on $LISTEN"
"$BIN" --data-dir "$DATA_DIR" serve --listen "$LISTEN" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' INT TERM EXIT

for _ in $(seq 1 120); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "error: the server exited during start-up (see the messages above)" >&2
    exit 1
  fi
  if curl -fsS "http://$LISTEN/readyz" >/dev/null 2>&1; then
    break
  fi
  sleep 0.5
done

cat <<MSG

Perimeter is ready on http://$LISTEN (Ctrl-C to stop).

Your local admin key (tenant default; also in $KEY_FILE):

  $KEY

Ask over the sample corpus with curl:

  curl -s http://$LISTEN/v1/chat/completions \\
    -H "Authorization: Bearer $KEY" \\
    -H 'content-type: application/json' \\
    -d '{"model": "perimeter", "messages": [{"role": "user", "content": "How many days of annual leave do staff get?"}]}'

Stream the answer (server-sent events):

  curl -sN http://$LISTEN/v1/chat/completions \\
    -H "Authorization: Bearer $KEY" \\
    -H 'content-type: application/json' \\
    -d '{"model": "perimeter", "stream": true, "messages": [{"role": "user", "content": "What are the clinic opening hours?"}]}'

List the documents, or make a key for a user of the hr group:

  curl -s http://$LISTEN/v1/documents -H "Authorization: Bearer $KEY"
  $BIN --data-dir $DATA_DIR keys create --tenant default --role user --groups hr

Or from the CLI (in another terminal):

  $BIN --data-dir $DATA_DIR ask "What is the mileage rate for business travel?"

MSG
wait "$server"
