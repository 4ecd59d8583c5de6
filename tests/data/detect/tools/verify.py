import json, re, sys, collections, base64
sys.path.insert(0, "/tmp/corpusgen")
from helpers import luhn_ok, iban_ok, nhs_ok, b58_ok, bech_ok, eth_ok

recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
KINDS = "EMAIL PHONE CREDIT_CARD IBAN SWIFT_BIC US_SSN US_ITIN UK_NINO UK_NHS PASSPORT IP_ADDRESS MAC_ADDRESS DATE_OF_BIRTH PERSON STREET_ADDRESS MEDICAL_RECORD_NUMBER MEDICAL_CONDITION CRYPTO_WALLET AWS_ACCESS_KEY AWS_SECRET_KEY GITHUB_TOKEN SLACK_TOKEN STRIPE_KEY GOOGLE_API_KEY OPENAI_API_KEY JWT PRIVATE_KEY PASSWORD GENERIC_SECRET".split()
errs = []; warns = []
def E(m): errs.append(m)
def W(m): warns.append(m)
ISO = set("AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW".split())

def valid(kind, v):
    d = re.sub(r"\D", "", v)
    if kind == "CREDIT_CARD": return 13 <= len(d) <= 19 and luhn_ok(d)
    if kind == "IBAN": return bool(re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9 ]+", v)) and iban_ok(v)
    if kind == "SWIFT_BIC": return bool(re.fullmatch(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?", v)) and v[4:6] in ISO
    if kind == "US_SSN":
        if len(d) != 9: return False
        a, g, s = d[:3], d[3:5], d[5:]
        return a not in ("000", "666") and a[0] != "9" and g != "00" and s != "0000"
    if kind == "US_ITIN":
        return len(d) == 9 and d[0] == "9" and 70 <= int(d[3:5]) <= 88
    if kind == "UK_NINO":
        n = v.replace(" ", "")
        if not re.fullmatch(r"[A-Z]{2}\d{6}[A-D]", n): return False
        p = n[:2]
        return p[0] not in "DFIQUV" and p[1] not in "DFIOQUV" and p not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")
    if kind == "UK_NHS": return nhs_ok(v)
    if kind == "CRYPTO_WALLET":
        if v.startswith("0x"): return bool(re.fullmatch(r"0x[0-9a-fA-F]{40}", v)) and eth_ok(v)
        if v.startswith("bc1"): return bech_ok(v)
        return b58_ok(v)
    if kind == "AWS_ACCESS_KEY": return bool(re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{16}", v))
    if kind == "AWS_SECRET_KEY": return bool(re.fullmatch(r"[A-Za-z0-9/+]{40}", v))
    if kind == "GITHUB_TOKEN": return bool(re.fullmatch(r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}", v))
    if kind == "SLACK_TOKEN": return bool(re.fullmatch(r"xox[bp]-[0-9-]+-[A-Za-z0-9]+|xapp-1-[A-Z0-9]+-\d+-[a-f0-9]+|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{24}", v))
    if kind == "STRIPE_KEY": return bool(re.fullmatch(r"(sk|rk)_(live|test)_[A-Za-z0-9]{24,}", v))
    if kind == "GOOGLE_API_KEY": return bool(re.fullmatch(r"AIza[0-9A-Za-z_-]{35}", v))
    if kind == "OPENAI_API_KEY": return bool(re.fullmatch(r"sk-proj-[A-Za-z0-9_-]{80,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}", v))
    if kind == "JWT":
        parts = v.split(".")
        if len(parts) != 3: return False
        dec = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        h = dec(parts[0]); dec(parts[1])
        return "alg" in h
    if kind == "PRIVATE_KEY":
        return bool(re.fullmatch(r"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.*-----END \1-----", v, re.S))
    if kind == "IP_ADDRESS":
        import ipaddress
        try: ipaddress.ip_address(v); return True
        except ValueError: return False
    if kind == "MAC_ADDRESS": return bool(re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}", v))
    if kind == "PHONE":
        dd = re.sub(r"\D", "", v)
        return 9 <= len(dd) <= 13
    return True

cnt = collections.Counter(); gen_by_kind = collections.defaultdict(collections.Counter); genres = collections.Counter()
recs_with_kind = collections.Counter()
for r in recs:
    assert set(r) == {"id", "genre", "text", "entities"}, r["id"]
    genres[r["genre"]] += 1
    t = r["text"]
    seen = collections.Counter()
    for e in r["entities"]:
        k, v = e["kind"], e["value"]
        if k not in KINDS: E(f"{r['id']}: bad kind {k}")
        if v not in t: E(f"{r['id']}: value not in text: {k} {v!r}")
        if v != v.strip(): E(f"{r['id']}: whitespace around {v!r}")
        try:
            if not valid(k, v): E(f"{r['id']}: invalid {k} {v!r}")
        except Exception as ex: E(f"{r['id']}: check failed {k} {v!r}: {ex}")
        cnt[k] += 1; gen_by_kind[k][r["genre"]] += 1; seen[v] += 1
    for k in set(e["kind"] for e in r["entities"]): recs_with_kind[k] += 1
    for v, n in seen.items():
        if t.count(v) != n: W(f"{r['id']}: {v!r} listed {n}x, occurs {t.count(v)}x")
    # lint for unlabelled look-alikes in positive records
    labelled = [e["value"] for e in r["entities"]]
    cov = lambda s: any(s in lv for lv in labelled)
    pats = {
        "EMAIL": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        "IPV4": r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
        "SECRET": r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|gh[pousr]_[A-Za-z0-9]{36}|xox[bpa]-[A-Za-z0-9-]+|[sr]k_(?:live|test)_[A-Za-z0-9]+|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+|sk-(?:proj-)?[A-Za-z0-9_-]{20,}|hooks\.slack\.com/services/\S+",
        "PEM": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    }
    for name, p in pats.items():
        for m in re.finditer(p, t):
            if not cov(m.group(0)): W(f"{r['id']}: unlabelled {name} {m.group(0)[:60]!r}")
    for m in re.finditer(r"\b\d[\d -]{11,22}\d\b", t):
        d = re.sub(r"\D", "", m.group(0))
        if 13 <= len(d) <= 19 and luhn_ok(d) and not cov(m.group(0)): W(f"{r['id']}: unlabelled luhn-valid {m.group(0)!r}")
    for m in re.finditer(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", t):
        if iban_ok(m.group(0)) and not cov(m.group(0)): W(f"{r['id']}: unlabelled IBAN {m.group(0)!r}")
    for m in re.finditer(r"\b\d{3}[ -]?\d{3}[ -]?\d{4}\b", t):
        if nhs_ok(m.group(0)) and not cov(m.group(0)) and r["genre"] != "code": W(f"{r['id']}: unlabelled NHS-valid {m.group(0)!r}")

for k in KINDS:
    g = gen_by_kind[k]
    need = 20 if k in ("PERSON", "STREET_ADDRESS") else 8
    if cnt[k] < need or len(g) < 3: E(f"coverage: {k} {cnt[k]} in {len(g)} genres")
neg = [r for r in recs if not r["entities"]]
print("records", len(recs), "empty-entity records", len(neg))
print("genres", dict(genres))
for k in KINDS: print(f"{k:24s} {cnt[k]:4d} recs={recs_with_kind[k]:3d} genres={dict(gen_by_kind[k])}")
print("\nERRORS:", len(errs)); [print(" ", e) for e in errs]
print("WARNINGS:", len(warns)); [print(" ", w) for w in warns]
