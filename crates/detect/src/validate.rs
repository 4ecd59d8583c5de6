//! Check digits, checksums and issuing rules: a format match that fails its validator is not a
//! finding. Every function is pure and total (no panics on any input).

use sha2::{Digest, Sha256};

/// Luhn (mod 10) over digit values 0..=9.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// The value of the first `n` digits.
fn prefix(digits: &[u8], n: usize) -> u32 {
    digits.iter().take(n).fold(0, |acc, &d| acc * 10 + u32::from(d))
}

/// Issuer identification number and length are those of a real card network.
pub(crate) fn card_network_ok(digits: &[u8]) -> bool {
    let len = digits.len();
    let (p1, p2, p3, p4) = (prefix(digits, 1), prefix(digits, 2), prefix(digits, 3), prefix(digits, 4));
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let amex = matches!(p2, 34 | 37) && len == 15;
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let discover = (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)) && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let diners = (matches!(p2, 36 | 38) || (300..=305).contains(&p3)) && (14..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    let maestro = (p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&len);
    visa || amex || mastercard || discover || jcb || diners || unionpay || maestro
}

/// IBAN length by country (SWIFT IBAN registry, plus the territories that use a parent
/// country's format).
pub(crate) fn iban_length(country: &[u8]) -> Option<usize> {
    // Country code and length, four characters each.
    const TABLE: &str = concat!(
        "AD24AE23AL28AT20AX18AZ28BA20BE16BG22BH22BI27BL27BR29BY28CH21CR22CY28CZ24DE22DJ27DK18DO28EE20EG29ES24",
        "FI18FK18FO18FR27GB22GE22GF27GG22GI23GL18GP27GR27GT28HR21HU28IE22IL23IM22IQ23IS26IT27JE22JO30KW30KZ20",
        "LB28LC32LI21LT20LU20LV21LY25MC27MD24ME22MF27MK19MN20MQ27MR27MT31MU30NC27NI28NL18NO15OM23PF27PK24PL28",
        "PM27PS29PT25QA29RE27RO24RS22RU33SA24SC31SD18SE24SI19SK24SM27SO23ST25SV28TF27TL23TN24TR26UA29VA22VG24",
        "WF27XK20YE30YT27",
    );
    TABLE
        .as_bytes()
        .chunks(4)
        .find(|e| &e[..2] == country)
        .and_then(|e| std::str::from_utf8(&e[2..]).ok()?.parse().ok())
}

/// ISO 13616: known country, its length, and mod-97 of the rearranged number equals 1.
/// `iban` is compact (no spaces) uppercase ASCII.
pub(crate) fn iban_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 || iban_length(&iban[..2]) != Some(iban.len()) {
        return false;
    }
    if !iban[2].is_ascii_digit() || !iban[3].is_ascii_digit() {
        return false;
    }
    let mut rem = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        match b {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(b - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// NHS number: weights 10..2 over the first nine digits, check digit 11 - (sum mod 11), where 11
/// means 0 and 10 means the number is invalid.
pub(crate) fn nhs_ok(d: &[u8]) -> bool {
    if d.len() != 10 {
        return false;
    }
    let sum: u32 = d[..9].iter().zip((2..=10u32).rev()).map(|(&x, w)| u32::from(x) * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == u32::from(d[9])
}

/// Which US taxpayer number nine digits are, if any: SSN (area not 000, 666 or 9xx; group not
/// 00; serial not 0000) or ITIN (area 9xx, group 50-65, 70-88, 90-92 or 94-99).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UsTin {
    Ssn,
    Itin,
}

pub(crate) fn us_tin(d: &[u8]) -> Option<UsTin> {
    if d.len() != 9 {
        return None;
    }
    let (area, group, serial) = (prefix(d, 3), prefix(&d[3..], 2), prefix(&d[5..], 4));
    if d[0] == 9 {
        let itin_group = matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99);
        return itin_group.then_some(UsTin::Itin);
    }
    (area != 0 && area != 666 && group != 0 && serial != 0).then_some(UsTin::Ssn)
}

/// UK National Insurance number prefix letters (HMRC rules).
pub(crate) fn nino_prefix_ok(a: u8, b: u8) -> bool {
    let a = a.to_ascii_uppercase();
    let b = b.to_ascii_uppercase();
    if !a.is_ascii_uppercase() || !b.is_ascii_uppercase() {
        return false;
    }
    if b"DFIQUV".contains(&a) || b"DFIOQUV".contains(&b) {
        return false;
    }
    !matches!(&[a, b], b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ")
}

/// ISO 3166-1 alpha-2 country codes, plus XK (Kosovo), which SWIFT uses.
pub(crate) fn iso_country(code: &[u8]) -> bool {
    const CODES: &str =
        "ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZCACCCDCFCGCHCICKCLCMCNCOCRCU\
CVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETFIFJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMINIOIQ\
IRISITJEJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLSLTLULVLYMAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENF\
NGNINLNONPNRNUNZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZTCTDTFTGTHTJ\
TKTLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVNVUWFWSXKYEYTZAZMZW";
    code.len() == 2 && CODES.as_bytes().chunks(2).any(|c| c == code)
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A Bitcoin Base58Check address: 25 bytes, version 0x00 (P2PKH, `1…`) or 0x05 (P2SH, `3…`),
/// and the last four bytes equal the first four of SHA-256(SHA-256(version + hash)).
pub(crate) fn bitcoin_base58(s: &str) -> bool {
    if s.len() > 40 {
        return false;
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(32);
    for c in s.bytes() {
        let Some(mut carry) = BASE58.iter().position(|&b| b == c).map(|v| v as u32) else { return false };
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&b| b == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend_from_slice(&bytes);
    if full.len() != 25 || !matches!(full[0], 0x00 | 0x05) {
        return false;
    }
    let hash = Sha256::digest(Sha256::digest(&full[..21]));
    hash[..4] == full[21..]
}

/// A Bitcoin segwit address (`bc1…`): bech32 (witness v0, BIP 173) or bech32m (v1+, BIP 350)
/// checksum, not mixed case, and a witness program of a legal length.
pub(crate) fn bitcoin_bech32(s: &str) -> bool {
    const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
    if s.len() > 90 || (s.bytes().any(|b| b.is_ascii_lowercase()) && s.bytes().any(|b| b.is_ascii_uppercase())) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    let Some(data) = lower.strip_prefix("bc1") else { return false };
    let mut values = Vec::with_capacity(data.len());
    for c in data.bytes() {
        let Some(v) = CHARSET.iter().position(|&b| b == c) else { return false };
        values.push(v as u32);
    }
    if values.len() < 7 {
        return false;
    }
    let mut chk: u32 = 1;
    let hrp = b"bc";
    let expanded = hrp.iter().map(|&c| u32::from(c) >> 5).chain([0]).chain(hrp.iter().map(|&c| u32::from(c) & 31));
    for v in expanded.chain(values.iter().copied()) {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ v;
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    let version = values[0];
    let program_bits = (values.len() - 7) * 5;
    let program_len = program_bits / 8;
    if version > 16 || program_bits % 8 >= 5 || !(2..=40).contains(&program_len) {
        return false;
    }
    match version {
        0 => chk == 1 && matches!(program_len, 20 | 32),
        _ => chk == 0x2bc8_30a3,
    }
}

/// An Ethereum address (40 hex digits, without `0x`) in mixed case whose case spells its
/// EIP-55 checksum: a letter is upper case exactly when the matching nibble of
/// Keccak-256(lower-case address) is 8 or more. One case throughout carries no checksum.
pub(crate) fn eip55(hex: &str) -> bool {
    let b = hex.as_bytes();
    if b.len() != 40 || !b.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    if !(b.iter().any(u8::is_ascii_lowercase) && b.iter().any(u8::is_ascii_uppercase)) {
        return false;
    }
    let hash = keccak256(&b.to_ascii_lowercase());
    b.iter().enumerate().all(|(i, c)| {
        let nibble = if i % 2 == 0 { hash[i / 2] >> 4 } else { hash[i / 2] & 0x0f };
        !c.is_ascii_alphabetic() || c.is_ascii_uppercase() == (nibble >= 8)
    })
}

/// Keccak-256 as Ethereum uses it (the original Keccak padding, not SHA-3's), for inputs of at
/// most one block (135 bytes); longer input is cut there (only 40-byte addresses are hashed).
fn keccak256(input: &[u8]) -> [u8; 32] {
    const RATE: usize = 136;
    let mut block = [0u8; RATE];
    let n = input.len().min(RATE - 1);
    block[..n].copy_from_slice(&input[..n]);
    block[n] ^= 0x01;
    block[RATE - 1] ^= 0x80;
    let mut state = [0u64; 25];
    for (lane, chunk) in state.iter_mut().zip(block.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *lane ^= u64::from_le_bytes(word);
    }
    keccak_f1600(&mut state);
    let mut out = [0u8; 32];
    for (chunk, lane) in out.chunks_exact_mut(8).zip(state) {
        chunk.copy_from_slice(&lane.to_le_bytes());
    }
    out
}

/// The Keccak-f[1600] permutation (24 rounds).
fn keccak_f1600(st: &mut [u64; 25]) {
    const RC: [u64; 24] = [
        0x0000_0000_0000_0001,
        0x0000_0000_0000_8082,
        0x8000_0000_0000_808a,
        0x8000_0000_8000_8000,
        0x0000_0000_0000_808b,
        0x0000_0000_8000_0001,
        0x8000_0000_8000_8081,
        0x8000_0000_0000_8009,
        0x0000_0000_0000_008a,
        0x0000_0000_0000_0088,
        0x0000_0000_8000_8009,
        0x0000_0000_8000_000a,
        0x0000_0000_8000_808b,
        0x8000_0000_0000_008b,
        0x8000_0000_0000_8089,
        0x8000_0000_0000_8003,
        0x8000_0000_0000_8002,
        0x8000_0000_0000_0080,
        0x0000_0000_0000_800a,
        0x8000_0000_8000_000a,
        0x8000_0000_8000_8081,
        0x8000_0000_0000_8080,
        0x0000_0000_8000_0001,
        0x8000_0000_8000_8008,
    ];
    const ROT: [u32; 24] = [1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44];
    const PI: [usize; 24] = [10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1];
    for rc in RC {
        // Theta.
        let mut c = [0u64; 5];
        for (x, cx) in c.iter_mut().enumerate() {
            *cx = st[x] ^ st[x + 5] ^ st[x + 10] ^ st[x + 15] ^ st[x + 20];
        }
        for x in 0..5 {
            let d = c[(x + 4) % 5] ^ c[(x + 1) % 5].rotate_left(1);
            for y in 0..5 {
                st[5 * y + x] ^= d;
            }
        }
        // Rho and pi.
        let mut carried = st[1];
        for (&j, &r) in PI.iter().zip(&ROT) {
            let next = st[j];
            st[j] = carried.rotate_left(r);
            carried = next;
        }
        // Chi.
        for y in 0..5 {
            let mut row = [0u64; 5];
            row.copy_from_slice(&st[5 * y..5 * y + 5]);
            for x in 0..5 {
                st[5 * y + x] = row[x] ^ (!row[(x + 1) % 5] & row[(x + 2) % 5]);
            }
        }
        // Iota.
        st[0] ^= rc;
    }
}

/// Shannon entropy of the bytes of `s`, in bits per byte.
pub(crate) fn entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(s: &str) -> Vec<u8> {
        s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
    }

    #[test]
    fn cards() {
        for ok in ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000"] {
            assert!(luhn(&digits(ok)) && card_network_ok(&digits(ok)), "{ok}");
        }
        assert!(!luhn(&digits("4111111111111112")));
        // ISBN-13 with a 9 prefix belongs to no network.
        assert!(!card_network_ok(&digits("9780306406157")));
        // Mastercard 2-series.
        assert!(card_network_ok(&digits("2223003122003222")));
    }

    #[test]
    fn ibans() {
        assert!(iban_ok(b"GB82WEST12345698765432"));
        assert!(iban_ok(b"DE89370400440532013000"));
        assert!(iban_ok(b"FR1420041010050500013M02606"));
        assert!(iban_ok(b"NO9386011117947"));
        assert!(!iban_ok(b"GB83WEST12345698765432"));
        assert!(!iban_ok(b"GB82WEST1234569876543"));
        assert!(!iban_ok(b"XX82WEST12345698765432"));
    }

    #[test]
    fn nhs_numbers() {
        assert!(nhs_ok(&digits("9434765919")));
        assert!(nhs_ok(&digits("4010232137")));
        assert!(!nhs_ok(&digits("9434765918")));
        // 1234567890: sum 1*10+2*9+...+9*2 = 210, 210 mod 11 = 1, check 10: invalid.
        assert!(!nhs_ok(&digits("1234567890")));
    }

    #[test]
    fn us_tins() {
        assert_eq!(us_tin(&digits("219099999")), Some(UsTin::Ssn));
        assert_eq!(us_tin(&digits("000123456")), None);
        assert_eq!(us_tin(&digits("666123456")), None);
        assert_eq!(us_tin(&digits("123004567")), None);
        assert_eq!(us_tin(&digits("123450000")), None);
        assert_eq!(us_tin(&digits("912781234")), Some(UsTin::Itin));
        assert_eq!(us_tin(&digits("912341234")), None);
        assert_eq!(us_tin(&digits("912931234")), None);
    }

    #[test]
    fn nino_prefixes() {
        assert!(nino_prefix_ok(b'A', b'B'));
        assert!(!nino_prefix_ok(b'Q', b'Q'));
        assert!(!nino_prefix_ok(b'B', b'G'));
        assert!(!nino_prefix_ok(b'A', b'O'));
        assert!(!nino_prefix_ok(b'Z', b'Z'));
    }

    #[test]
    fn bitcoin() {
        assert!(bitcoin_base58("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"));
        assert!(bitcoin_base58("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(!bitcoin_base58("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"));
        assert!(bitcoin_bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
        assert!(bitcoin_bech32("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"));
        assert!(bitcoin_bech32("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"));
        assert!(!bitcoin_bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr"));
        assert!(!bitcoin_bech32("bc1Qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
    }

    #[test]
    fn ethereum_checksums() {
        let empty: String = keccak256(b"").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(empty, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
        // The EIP-55 specification's examples.
        for ok in [
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "fB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "dbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "D1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert!(eip55(ok), "{ok}");
        }
        // One letter's case flipped; one case throughout; not 40 hex digits.
        assert!(!eip55("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"));
        assert!(!eip55("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"));
        assert!(!eip55("5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED"));
        assert!(!eip55("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe"));
    }

    #[test]
    fn countries_and_entropy() {
        assert!(iso_country(b"DE") && iso_country(b"GB") && iso_country(b"XK"));
        assert!(!iso_country(b"ZZ") && !iso_country(b"D"));
        assert!(entropy("aaaa") < 0.01);
        assert!(entropy("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") > 4.0);
    }
}
