"""Reference embeddings for all-MiniLM-L6-v2, computed independently of Perimeter's engine.

A plain NumPy implementation of the BERT encoder (float64) with mean pooling and L2
normalisation, reading the same pinned safetensors and tokenizer.json. Regenerate with:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy tokenizers
    /tmp/ref/bin/python crates/runtime/tests/data/make_reference.py models > crates/runtime/tests/data/minilm_reference.json
"""
import json
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

SENTENCES = [
    "How many days of annual leave do full-time staff get?",
    "Staff are entitled to 27 days of paid holiday each year.",
    "The pharmacy charges a fixed fee for each prescription item.",
    "Ünïcödé, numbers 12345 and punctuation!?",
]


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[meta["dtype"]]
        out[name] = np.frombuffer(data[8 + n + start : 8 + n + end], dtype=dtype).reshape(meta["shape"]).astype(np.float64)
    return out


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def erf(x):
    from math import erf as e
    return np.vectorize(e)(x)


def encode(t, ids, heads=12):
    L = len(ids)
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:L] + t["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    d = x.shape[1]
    dh = d // heads
    for i in range(6):
        p = f"encoder.layer.{i}."
        lin = lambda v, name: v @ t[p + name + ".weight"].T + t[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(L, heads, dh).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(L, heads, dh).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(L, heads, dh).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(L, d)
        a = layer_norm(lin(ctx, "attention.output.dense") + x, t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        h = lin(a, "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = layer_norm(lin(h, "output.dense") + a, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    m = x.mean(0)
    return m / np.linalg.norm(m)


def main():
    models = sys.argv[1]
    t = load_safetensors(f"{models}/all-minilm-l6-v2/model.safetensors")
    tok = Tokenizer.from_file(f"{models}/all-minilm-l6-v2/tokenizer.json")
    tok.no_padding()
    out = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        out.append({"text": s, "ids": ids, "embedding": [round(float(v), 7) for v in encode(t, ids)]})
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


main()
