"""Anchor for the detector: Microsoft Presidio's AnalyzerEngine on the same labelled corpus.

Not part of the test suite. Set-up (see BENCHMARKS.md):
    python3 -m venv /tmp/presidio && /tmp/presidio/bin/pip install presidio-analyzer
    /tmp/presidio/bin/python bench/presidio_anchor.py tests/data/detect/corpus.jsonl

No spaCy model package is reachable from the registries this project may use, so Presidio runs
with a blank English spaCy pipeline: its regex/checksum/context recognisers work, its NER-based
ones (PERSON, LOCATION, DATE_TIME) find nothing. Per-kind figures are reported only for kinds
that Presidio has a recogniser for.
"""
import collections
import json
import sys
import tempfile
import time

import spacy
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

MAP = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN", "US_ITIN": "US_ITIN", "UK_NHS": "UK_NHS", "UK_NINO": "UK_NINO", "IP_ADDRESS": "IP_ADDRESS",
    "CRYPTO": "CRYPTO_WALLET", "US_PASSPORT": "PASSPORT", "PERSON": "PERSON", "MAC_ADDRESS": "MAC_ADDRESS",
}

records = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
blank = tempfile.mkdtemp()
spacy.blank("en").to_disk(blank)
nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": blank}]}).create_engine()
engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
supported = {MAP[e] for e in engine.get_supported_entities("en") if e in MAP}
print(f"presidio-analyzer, blank spaCy pipeline; kinds compared: {', '.join(sorted(supported))}")

tally = collections.defaultdict(lambda: [0, 0, 0])
bytes_total = 0
t0 = time.perf_counter()
results = []
for r in records:
    bytes_total += len(r["text"].encode())
    results.append(engine.analyze(text=r["text"], language="en"))
elapsed = time.perf_counter() - t0
for r, found in zip(records, results):
    gold, cursor = [], {}
    for g in r["entities"]:
        if g["kind"] not in supported:
            continue
        key = (g["kind"], g["value"])
        at = r["text"].find(g["value"], cursor.get(key, 0))
        cursor[key] = at + len(g["value"])
        gold.append([g["kind"], at, at + len(g["value"]), False])
    for f in found:
        kind = MAP.get(f.entity_type)
        if kind not in supported or f.score < 0.5:
            continue
        hit = next((g for g in gold if g[0] == kind and not g[3] and f.start < g[2] and f.end > g[1]), None)
        if hit:
            hit[3] = True
            tally[kind][0] += 1
        else:
            tally[kind][1] += 1
    for g in gold:
        if not g[3]:
            tally[g[0]][2] += 1
print(f"{len(records)} records, {bytes_total} bytes in {elapsed:.2f} s: {bytes_total / elapsed / 1e6:.4f} MB/s, "
      f"{elapsed / len(records) * 1e3:.1f} ms per record")
print(f"{'kind':<16} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7}")
for kind in sorted(tally):
    tp, fp, fn = tally[kind]
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    print(f"{kind:<16} {tp:>4} {fp:>4} {fn:>4} {p:>9.3f} {r:>7.3f}")
# Latency for a 2 KB prompt.
text = "\n\n".join(r["text"] for r in records)
lat = []
for i in range(200):
    at = (i * 2048) % max(1, len(text) - 2048)
    t = time.perf_counter()
    engine.analyze(text=text[at:at + 2048], language="en")
    lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print(f"2 KB prompt: P50 {lat[len(lat) // 2]:.0f} µs, P99 {lat[len(lat) * 99 // 100]:.0f} µs")
