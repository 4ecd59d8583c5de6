"""Value generators and checksum helpers for heldout_gen.py.

Written independently of helpers.py / gen.py (which build corpus.jsonl), so that the held-out set
does not share code paths with the tuning corpus. Everything draws from one seeded RNG.
"""
import base64
import hashlib
import json
import random
import string
import zlib

R = random.Random(0x4E1D_0A7)

UP = string.ascii_uppercase
LO = string.ascii_lowercase
DIG = string.digits
ALNUM = UP + LO + DIG
HEX = "0123456789abcdef"
B32 = UP + "234567"
B64 = ALNUM + "+/"
B64U = ALNUM + "-_"


def rs(n, alphabet=ALNUM):
    return "".join(R.choice(alphabet) for _ in range(n))


def grp(s, sizes, sep=" "):
    out, i = [], 0
    for n in sizes:
        if i < len(s):
            out.append(s[i:i + n])
        i += n
    if i < len(s):
        out.append(s[i:])
    return sep.join(out)


# ---------------------------------------------------------------- Luhn / cards
def luhn_sum(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total


def luhn_valid(s):
    d = "".join(c for c in s if c.isdigit())
    return len(d) > 1 and luhn_sum(d) % 10 == 0


def luhn_complete(body):
    for c in DIG:
        if luhn_sum(body + c) % 10 == 0:
            return body + c
    raise AssertionError


def card(prefix, length=16):
    return luhn_complete(prefix + rs(length - len(prefix) - 1, DIG))


def not_luhn(prefix, length=16):
    while True:
        s = prefix + rs(length - len(prefix), DIG)
        if not luhn_valid(s):
            return s


# ---------------------------------------------------------------- IBAN
IBAN_LEN = {"GB": 22, "DE": 22, "FR": 27, "ES": 24, "PL": 28, "NL": 18, "IT": 27, "BE": 16, "IE": 22,
            "AT": 20, "PT": 25, "CH": 21, "SE": 24, "DK": 18, "LU": 20, "FI": 18}


def _iban_num(s):
    return int("".join(str(int(c, 36)) for c in s))


def iban_valid(s):
    s = s.replace(" ", "")
    return len(s) == IBAN_LEN.get(s[:2], -1) and _iban_num(s[4:] + s[:4]) % 97 == 1


def iban(cc, bban):
    chk = 98 - _iban_num(bban + cc + "00") % 97
    v = f"{cc}{chk:02d}{bban}"
    assert iban_valid(v), v
    return v


def bban(cc):
    if cc == "GB":
        return R.choice(["NWBK", "BARC", "LOYD", "MIDL", "HBUK"]) + rs(14, DIG)
    if cc == "IE":
        return R.choice(["AIBK", "BOFI"]) + rs(14, DIG)
    if cc == "NL":
        return R.choice(["INGB", "RABO", "ABNA"]) + rs(10, DIG)
    if cc == "IT":
        return R.choice(UP) + rs(22, DIG)
    return rs(IBAN_LEN[cc] - 4, DIG)


def mk_iban(cc, grouped=True):
    v = iban(cc, bban(cc))
    return grp(v, [4] * 8) if grouped else v


def bad_iban(cc, grouped=True):
    v = iban(cc, bban(cc))
    chk = int(v[2:4])
    wrong = f"{(chk + R.randint(1, 50)) % 97 + 2:02d}"
    if wrong == v[2:4]:
        wrong = f"{(chk + 7) % 90 + 2:02d}"
    v = v[:2] + wrong + v[4:]
    assert not iban_valid(v)
    return grp(v, [4] * 8) if grouped else v


# ---------------------------------------------------------------- NHS / SSN / ITIN / NINO
def nhs_valid(s):
    d = [int(c) for c in s if c.isdigit()]
    if len(d) != 10:
        return False
    chk = 11 - sum(d[i] * (10 - i) for i in range(9)) % 11
    chk = 0 if chk == 11 else chk
    return chk != 10 and chk == d[9]


def nhs(sep=" "):
    while True:
        d = [R.randint(0, 9) for _ in range(9)]
        if d[0] == 0:
            continue
        chk = 11 - sum(d[i] * (10 - i) for i in range(9)) % 11
        chk = 0 if chk == 11 else chk
        if chk == 10:
            continue
        s = "".join(map(str, d)) + str(chk)
        return grp(s, [3, 3, 4], sep) if sep is not None else s


def bad_nhs(sep=" "):
    while True:
        s = rs(10, DIG)
        if s[0] != "0" and not nhs_valid(s):
            return grp(s, [3, 3, 4], sep)


def ssn(sep="-"):
    while True:
        a = R.randint(1, 899)
        if a != 666:
            break
    s = f"{a:03d}{R.randint(1, 99):02d}{R.randint(1, 9999):04d}"
    return grp(s, [3, 2, 4], sep)


def itin(sep="-"):
    s = f"9{R.randint(0, 99):02d}{R.randint(70, 88):02d}{R.randint(1, 9999):04d}"
    return grp(s, [3, 2, 4], sep)


def nino(spaced=True):
    while True:
        p = R.choice("ABCEGHJKLMNOPRSTWXYZ") + R.choice("ABCEGHJKLMNPRSTWXYZ")
        if p not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            break
    d = rs(6, DIG)
    s = R.choice("ABCD")
    return f"{p} {d[:2]} {d[2:4]} {d[4:]} {s}" if spaced else f"{p}{d}{s}"


# ---------------------------------------------------------------- crypto wallets
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _dsha(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def b58enc(b):
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out


def b58check(version, payload):
    raw = bytes([version]) + payload
    return b58enc(raw + _dsha(raw)[:4])


def b58dec(s):
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(s) - len(s.lstrip("1"))) + b


def b58check_valid(s):
    b = b58dec(s)
    return len(b) == 25 and _dsha(b[:-4])[:4] == b[-4:]


BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (b >> i) & 1 else 0
    return chk


def _hrp(h):
    return [ord(x) >> 5 for x in h] + [0] + [ord(x) & 31 for x in h]


def _bits(data, frm, to):
    acc = bits = 0
    out = []
    for v in data:
        acc = (acc << frm) | v
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & ((1 << to) - 1))
    if bits:
        out.append((acc << (to - bits)) & ((1 << to) - 1))
    return out


def segwit(witver, prog, hrp="bc"):
    data = [witver] + _bits(prog, 8, 5)
    const = 1 if witver == 0 else 0x2BC830A3
    pm = _polymod(_hrp(hrp) + data + [0] * 6) ^ const
    chk = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH[d] for d in data + chk)


def segwit_valid(s):
    hrp, _, rest = s.rpartition("1")
    data = [BECH.index(c) for c in rest]
    const = 1 if data[0] == 0 else 0x2BC830A3
    return _polymod(_hrp(hrp) + data) == const


# Keccak-256 (the pre-standard padding used by Ethereum), checked against hashlib.sha3_256 below.
_ROT = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61], [28, 55, 25, 21, 56], [27, 20, 39, 8, 14]]
M64 = (1 << 64) - 1


def _rol(x, n):
    return ((x << n) | (x >> (64 - n))) & M64 if n else x


def _keccak_f(A):
    lfsr = 1
    for _ in range(24):
        C = [A[x][0] ^ A[x][1] ^ A[x][2] ^ A[x][3] ^ A[x][4] for x in range(5)]
        D = [C[(x - 1) % 5] ^ _rol(C[(x + 1) % 5], 1) for x in range(5)]
        A = [[A[x][y] ^ D[x] for y in range(5)] for x in range(5)]
        B = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                B[y][(2 * x + 3 * y) % 5] = _rol(A[x][y], _ROT[x][y])
        A = [[B[x][y] ^ ((~B[(x + 1) % 5][y]) & B[(x + 2) % 5][y]) for y in range(5)] for x in range(5)]
        for j in range(7):
            if lfsr & 1:
                A[0][0] ^= 1 << ((1 << j) - 1)
            lfsr = ((lfsr << 1) ^ 0x71) & 0xFF if lfsr & 0x80 else (lfsr << 1)
    return A


def _sponge(msg, pad):
    rate = 136
    m = bytearray(msg) + bytes([pad])
    while len(m) % rate:
        m.append(0)
    m[-1] |= 0x80
    A = [[0] * 5 for _ in range(5)]
    for off in range(0, len(m), rate):
        blk = m[off:off + rate]
        for i in range(rate // 8):
            x, y = i % 5, i // 5
            A[x][y] ^= int.from_bytes(blk[8 * i:8 * i + 8], "little")
        A = _keccak_f(A)
    out = b""
    for i in range(4):
        out += A[i % 5][i // 5].to_bytes(8, "little")
    return out


def keccak256(msg):
    return _sponge(msg, 0x01)


assert _sponge(b"abc", 0x06) == hashlib.sha3_256(b"abc").digest()
assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def eip55(hex40):
    h = keccak256(hex40.lower().encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(h[i], 16) >= 8 else c for i, c in enumerate(hex40.lower()))


def eth():
    return eip55(rs(40, HEX))


def btc_p2pkh():
    return b58check(0x00, R.randbytes(20))


def btc_p2sh():
    return b58check(0x05, R.randbytes(20))


def btc_wpkh():
    return segwit(0, R.randbytes(20))


def btc_tr():
    return segwit(1, R.randbytes(32))


def broken_b58():
    s = btc_p2pkh()
    i = len(s) - 3
    c = B58[(B58.index(s[i]) + 5) % 58]
    bad = s[:i] + c + s[i + 1:]
    assert not b58check_valid(bad)
    return bad


# ---------------------------------------------------------------- secrets
def aws_ak(prefix="AKIA"):
    return prefix + rs(16, B32)


def aws_sk():
    return rs(40, ALNUM + "/+")


def _b62(n, width=6):
    a = DIG + UP + LO
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = a[r] + out
    return out.rjust(width, "0")


def gh(prefix="ghp_"):
    body = rs(30)
    return prefix + body + _b62(zlib.crc32(body.encode()))


def gh_pat():
    return "github_pat_11" + rs(20, UP + DIG) + "_" + rs(59)


def slack_bot():
    return "xoxb-" + rs(11, DIG) + "-" + rs(13, DIG) + "-" + rs(24)


def slack_user():
    return "xoxp-" + rs(11, DIG) + "-" + rs(12, DIG) + "-" + rs(13, DIG) + "-" + rs(32, HEX)


def slack_app():
    return "xapp-1-A" + rs(10, UP + DIG) + "-" + rs(13, DIG) + "-" + rs(64, HEX)


def slack_hook():
    return "https://hooks.slack.com/services/T" + rs(8, UP + DIG) + "/B" + rs(10, UP + DIG) + "/" + rs(24)


def stripe(prefix="sk_live_", n=24):
    return prefix + rs(n)


def gkey():
    return "AIzaSy" + rs(33, ALNUM + "_-")


def oa_proj():
    return "sk-proj-" + rs(74, ALNUM + "_-") + "T3BlbkFJ" + rs(74, ALNUM + "_-")


def oa_legacy():
    return "sk-" + rs(20) + "T3BlbkFJ" + rs(20)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(payload, alg="HS256"):
    head = {"alg": alg, "typ": "JWT"}
    sig = {"HS256": 32, "HS384": 48, "HS512": 64, "RS256": 256, "ES256": 64}[alg]
    return ".".join([b64u(json.dumps(head, separators=(",", ":")).encode()),
                     b64u(json.dumps(payload, separators=(",", ":")).encode()), b64u(R.randbytes(sig))])


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _wrap64(b, width=64):
    s = base64.b64encode(b).decode()
    return [s[i:i + width] for i in range(0, len(s), width)]


def pem(kind="RSA"):
    """A PEM private key: correct framing and DER/openssh prefix, random body (not a usable key)."""
    if kind == "EC":
        der = (b"\x30\x77\x02\x01\x01\x04\x20" + R.randbytes(32) + b"\xa0\x0a\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"
               + b"\xa1\x44\x03\x42\x00\x04" + R.randbytes(64))
        label, lines = "EC PRIVATE KEY", _wrap64(der)
    elif kind == "RSA":
        body = b"\x02\x01\x00\x02\x82\x01\x01\x00" + R.randbytes(1180)
        der = b"\x30\x82" + len(body).to_bytes(2, "big") + body
        label, lines = "RSA PRIVATE KEY", _wrap64(der)
    elif kind == "PKCS8":
        inner = b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00" + R.randbytes(1184)
        body = (b"\x02\x01\x00\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00\x04\x82"
                + len(inner).to_bytes(2, "big") + inner)
        der = b"\x30\x82" + len(body).to_bytes(2, "big") + body
        label, lines = "PRIVATE KEY", _wrap64(der)
    elif kind == "OPENSSH":
        pub = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + R.randbytes(32)
        blob = (b"openssh-key-v1\x00" + b"\x00\x00\x00\x04none" * 2 + b"\x00\x00\x00\x00\x00\x00\x00\x01"
                + len(pub).to_bytes(4, "big") + pub + b"\x00\x00\x00\x90" + R.randbytes(144))
        label, lines = "OPENSSH PRIVATE KEY", _wrap64(blob, 70)
    else:
        raise ValueError(kind)
    return [f"-----BEGIN {label}-----"] + lines + [f"-----END {label}-----"]


def pem_text(kind="RSA", indent=""):
    return ("\n" + indent).join(pem(kind))


def pem_json(kind="PKCS8"):
    return "\\n".join(pem(kind))


def public_pem():
    der = b"\x30\x82\x01\x22\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00\x03\x82\x01\x0f\x00" + R.randbytes(270)
    return "\n".join(["-----BEGIN PUBLIC KEY-----"] + _wrap64(der) + ["-----END PUBLIC KEY-----"])


def cert_pem():
    der = b"\x30\x82\x03\x51\x30\x82\x02\x39\xa0\x03\x02\x01\x02" + R.randbytes(820)
    return "\n".join(["-----BEGIN CERTIFICATE-----"] + _wrap64(der) + ["-----END CERTIFICATE-----"])


def b64(n):
    return base64.b64encode(R.randbytes(n)).decode()


def hexs(n):
    return rs(n, HEX)


def uuid4():
    h = rs(32, HEX)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{R.choice('89ab')}{h[17:20]}-{h[20:]}"


def isbn13(prefix="978"):
    body = prefix + rs(9, DIG)
    s = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
    return body + str((10 - s % 10) % 10)


def isbn10():
    body = rs(9, DIG)
    s = sum(int(c) * (10 - i) for i, c in enumerate(body))
    c = (11 - s % 11) % 11
    return body + ("X" if c == 10 else str(c))


def mac(sep=":", upper=False):
    b = [R.randint(0, 255) for _ in range(6)]
    b[0] &= 0xFC
    s = sep.join(f"{x:02x}" for x in b)
    return s.upper() if upper else s


def mac_cisco():
    h = rs(12, HEX)
    return f"{h[:4]}.{h[4:8]}.{h[8:]}"


def ean13(prefix="50"):
    body = prefix + rs(12 - len(prefix), DIG)
    t = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
    return body + str((10 - t % 10) % 10)


def png_b64():
    return base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + R.randbytes(80)).decode()
