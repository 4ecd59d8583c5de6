#!/usr/bin/env bash
# `make bench`: Perimeter's own benchmarks, in the order BENCHMARKS.md reports them. Run it on a
# quiet machine (no builds, no other heavy processes): a busy second core changes results tenfold.
# The anchor measurements (sentence-transformers, llama-bench) are set up separately; see
# BENCHMARKS.md.
set -euo pipefail
BIN=${1:-target/release/perimeter}
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "== ingestion of examples/corpus"
"$BIN" --data-dir "$DATA" ingest examples/corpus
echo "== retrieval quality"
"$BIN" --data-dir "$DATA" eval
echo "== embedding throughput"
"$BIN" bench embed --sentences 1000 --runs 3
echo "== generation speed"
"$BIN" bench generate --prompt-tokens 512 --new-tokens 128 --runs 3
"$BIN" bench generate --prompt-tokens 16 --new-tokens 128 --runs 3
echo "== time to first token (5-passage RAG prompt)"
"$BIN" --data-dir "$DATA" bench rag --runs 5
echo "== retrieval latency at 100,000 chunks"
"$BIN" bench retrieval --chunks 100000 --queries 500
