import random, json, base64, hashlib, zlib, string

R = random.Random(20241128)
UP = string.ascii_uppercase
LO = string.ascii_lowercase
DIG = string.digits
ALNUM = UP + LO + DIG
HEX = "0123456789abcdef"

def rs(n, alphabet=ALNUM):
    return "".join(R.choice(alphabet) for _ in range(n))

# ---------- checksums ----------
def luhn_ok(s):
    d = [int(c) for c in s if c.isdigit()]
    tot = 0
    for i, x in enumerate(reversed(d)):
        if i % 2 == 1:
            x *= 2
            if x > 9: x -= 9
        tot += x
    return tot % 10 == 0

def iban_ok(s):
    s = s.replace(" ", "")
    r = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in r)) % 97 == 1

def nhs_check(d9):
    tot = sum(int(d) * w for d, w in zip(d9, range(10, 1, -1)))
    c = 11 - tot % 11
    if c == 11: c = 0
    return None if c == 10 else c

def nhs_ok(s):
    d = "".join(c for c in s if c.isdigit())
    if len(d) != 10: return False
    c = nhs_check(d[:9])
    return c is not None and c == int(d[9])

def make_nhs(sep=" "):
    while True:
        d9 = str(R.randint(4, 6)) + rs(8, DIG)
        c = nhs_check(d9)
        if c is not None:
            d = d9 + str(c)
            return d[:3] + sep + d[3:6] + sep + d[6:]

def bad_nhs(sep=" "):
    while True:
        d9 = str(R.randint(4, 6)) + rs(8, DIG)
        c = nhs_check(d9)
        if c is not None:
            d = d9 + str((c + 1) % 10)
            assert not nhs_ok(d)
            return d[:3] + sep + d[3:6] + sep + d[6:]

# ---------- bitcoin ----------
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
def _dsha(b): return hashlib.sha256(hashlib.sha256(b).digest()).digest()
def b58check(version, payload):
    data = bytes([version]) + payload
    data += _dsha(data)[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out
def b58_ok(s):
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    pad = len(s) - len(s.lstrip("1"))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    raw = b"\0" * pad + raw
    return len(raw) == 25 and _dsha(raw[:-4])[:4] == raw[-4:] and raw[0] in (0, 5)

BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
def _polymod(values):
    G = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1ffffff) << 5 ^ v
        for i in range(5):
            chk ^= G[i] if ((b >> i) & 1) else 0
    return chk
def _hrp_expand(h): return [ord(x) >> 5 for x in h] + [0] + [ord(x) & 31 for x in h]
def _convertbits(data, frm, to):
    acc = bits = 0; ret = []; maxv = (1 << to) - 1
    for v in data:
        acc = (acc << frm) | v; bits += frm
        while bits >= to:
            bits -= to; ret.append((acc >> bits) & maxv)
    if bits: ret.append((acc << (to - bits)) & maxv)
    return ret
def segwit_addr(witver, prog, hrp="bc"):
    const = 1 if witver == 0 else 0x2bc830a3
    data = [witver] + _convertbits(prog, 8, 5)
    pm = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    chk = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH[d] for d in data + chk)
def bech_ok(s):
    hrp, data = s.rsplit("1", 1)
    d = [BECH.index(c) for c in data]
    pm = _polymod(_hrp_expand(hrp) + d)
    return pm == (1 if d[0] == 0 else 0x2bc830a3)

# ---------- keccak / EIP-55 ----------
RC = [0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
      0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
      0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
      0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
      0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
      0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008]
ROT = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61], [28, 55, 25, 21, 56], [27, 20, 39, 8, 14]]
M64 = (1 << 64) - 1
def _rol(x, n): return ((x << n) | (x >> (64 - n))) & M64 if n else x
def _kf(A):
    for rnd in range(24):
        C = [A[x][0] ^ A[x][1] ^ A[x][2] ^ A[x][3] ^ A[x][4] for x in range(5)]
        D = [C[(x - 1) % 5] ^ _rol(C[(x + 1) % 5], 1) for x in range(5)]
        A = [[A[x][y] ^ D[x] for y in range(5)] for x in range(5)]
        B = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                B[y][(2 * x + 3 * y) % 5] = _rol(A[x][y], ROT[x][y])
        A = [[B[x][y] ^ ((~B[(x + 1) % 5][y]) & B[(x + 2) % 5][y]) for y in range(5)] for x in range(5)]
        A[0][0] ^= RC[rnd]
    return A
def keccak256(msg, pad=0x01):
    rate = 136
    m = bytearray(msg) + bytes([pad])
    while len(m) % rate: m.append(0)
    m[-1] |= 0x80
    A = [[0] * 5 for _ in range(5)]
    for off in range(0, len(m), rate):
        blk = m[off:off + rate]
        for i in range(rate // 8):
            x, y = i % 5, i // 5
            A[x][y] ^= int.from_bytes(blk[8 * i:8 * i + 8], "little")
        A = _kf(A)
    out = b"".join(A[i % 5][i // 5].to_bytes(8, "little") for i in range(4))
    return out
def eip55(hex40):
    h = keccak256(hex40.lower().encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(h[i], 16) >= 8 else c for i, c in enumerate(hex40.lower()))
def eth_ok(a):
    body = a[2:]
    if body == body.lower() or body == body.upper(): return True
    return eip55(body) == a

# ---------- secrets ----------
B32 = UP + "234567"
def aws_ak(prefix="AKIA"): return prefix + rs(16, B32)
def aws_sk(): return rs(40, ALNUM + "/+")
B62 = DIG + UP + LO
def _b62(n):
    s = ""
    while n:
        n, r = divmod(n, 62); s = B62[r] + s
    return s.rjust(6, "0")
def gh(prefix="ghp_"):
    r = rs(30)
    return prefix + r + _b62(zlib.crc32(r.encode()))
def gh_pat(): return "github_pat_11" + rs(20, UP + DIG) + "_" + rs(59)
def slack_bot(): return "xoxb-" + rs(12, DIG) + "-" + rs(13, DIG) + "-" + rs(24)
def slack_user(): return "xoxp-" + rs(12, DIG) + "-" + rs(12, DIG) + "-" + rs(13, DIG) + "-" + rs(32, HEX)
def slack_app(): return "xapp-1-A" + rs(10, UP + DIG) + "-" + rs(13, DIG) + "-" + rs(64, HEX)
def slack_hook(): return "https://hooks.slack.com/services/T" + rs(8, UP + DIG) + "/B" + rs(10, UP + DIG) + "/" + rs(24)
def stripe(prefix="sk_live_", n=24): return prefix + rs(n)
def gkey(): return "AIzaSy" + rs(33, ALNUM + "_-")
def oa_proj(): return "sk-proj-" + rs(48, ALNUM + "_-") + "T3BlbkFJ" + rs(48, ALNUM + "_-")
def oa_legacy(): return "sk-" + rs(20) + "T3BlbkFJ" + rs(20)
def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def jwt(payload, alg="HS256", siglen=32):
    h = b64u(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    p = b64u(json.dumps(payload, separators=(",", ":")).encode())
    s = b64u(bytes(R.getrandbits(8) for _ in range(siglen)))
    return f"{h}.{p}.{s}"
PEM_PREFIX = {
    "RSA PRIVATE KEY": bytes.fromhex("308204a40201000282010100"),
    "PRIVATE KEY": bytes.fromhex("308204bd020100300d06092a864886f70d0101010500048204a7"),
    "EC PRIVATE KEY": bytes.fromhex("30770201010420"),
    "OPENSSH PRIVATE KEY": b"openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none\x00\x00\x00\x00\x00\x00\x00\x01",
}
def pem(kind, nbytes=230):
    raw = PEM_PREFIX.get(kind, b"") + bytes(R.getrandbits(8) for _ in range(nbytes))
    b = base64.b64encode(raw).decode()
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"
def hexs(n): return rs(n, HEX)
