//! Payment and banking identifiers: CREDIT_CARD (Luhn + network), IBAN (mod-97 + country
//! length), SWIFT_BIC (context or a nearby IBAN) and CRYPTO_WALLET (Base58Check, bech32,
//! Ethereum with context).

use perimeter_types::EntityKind;
use regex::{Match, Regex};

use super::{byte_at, compile, continues_token, finding, group_lengths, Digits};
use crate::context::{after, before, near};
use crate::scope::find_in_runs;
use crate::validate::{
    bitcoin_base58, bitcoin_bech32, card_network_ok, eip55, iban_length, iban_ok, iso_country, luhn,
};
use crate::{DetectError, Finding, NormalizedText, Recognizer};

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    let iban = compile("iban", IBAN)?;
    all.push(Box::new(CreditCard { re: compile("credit-card", r"\b[0-9](?:[ \-]?[0-9]){12,18}\b")? }));
    all.push(Box::new(Iban { re: iban.clone() }));
    all.push(Box::new(SwiftBic {
        re: compile("swift-bic", r"\b[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?\b")?,
        iban,
        postcode_after: compile("swift-bic", r"\A[ \t]+(?:[A-Z]{1,2}[0-9][A-Z0-9]?[ \t]?[0-9][A-Z]{2}|[0-9]{4,5})\b")?,
    }));
    all.push(Box::new(CryptoWallet {
        base58: compile("crypto-wallet", r"\b[13][1-9A-HJ-NP-Za-km-z]{25,34}\b")?,
        bech32: compile("crypto-wallet", r"\b(?:bc1|BC1)[02-9ac-hj-np-zAC-HJ-NP-Z]{11,87}\b")?,
        eth: compile("crypto-wallet", r"\b0x[0-9a-fA-F]{40}\b")?,
    }));
    Ok(())
}

struct CreditCard {
    re: Regex,
}

impl Recognizer for CreditCard {
    fn name(&self) -> &'static str {
        "credit-card"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::CreditCard]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"[0-9](?:[ \-]?[0-9]){12}"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_runs(&self.re, t, &text.runs().numeric, 13, |r| r.chain >= 13) {
            if continues_token(t, m.start(), m.end()) {
                continue;
            }
            // Separated numbers are printed in card groups: a first group of four, then groups
            // of three to seven (4-4-4-4, 4-6-5, 4-6-4, 4-4-5).
            let s = m.as_str();
            if let Some(end) = card_end(s) {
                let score = if s[..end].contains([' ', '-']) { 0.9 } else { 0.85 };
                out.push(finding(EntityKind::CreditCard, m.start(), m.start() + end, score, &["luhn", "iin"]));
            }
        }
    }
}

/// The end of the card number that `s` (a match of digits and single separators) is or starts
/// with: all of it, or else its first groups, when what follows is another number printed
/// after the card ("4111 1111 1111 1111 03 28" holds an expiry). `None` when no such prefix
/// is a card.
fn card_end(s: &str) -> Option<usize> {
    let valid = |part: &str| {
        // Separated numbers are printed in card groups: a first group of four, then groups of
        // three to seven (4-4-4-4, 4-6-5, 4-6-4, 4-4-5).
        let groups: Vec<usize> = group_lengths(part).collect();
        if groups.len() > 1 && (groups[0] != 4 || groups[1..].iter().any(|g| !(3..=7).contains(g))) {
            return false;
        }
        Digits::of(part)
            .is_some_and(|d| d.as_slice().len() >= 13 && luhn(d.as_slice()) && card_network_ok(d.as_slice()))
    };
    if valid(s) {
        return Some(s.len());
    }
    // Group ends, longest first; a cut needs at least two whole groups of card shape.
    let mut cuts: Vec<usize> = s.match_indices([' ', '-']).map(|(i, _)| i).collect();
    cuts.reverse();
    cuts.into_iter().find(|&cut| valid(&s[..cut]))
}

/// Two letters, two check digits, then the basic bank account number, compact or in groups of four.
const IBAN: &str = r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b";

/// Valid IBANs among the matches of `re` in `t`, as (start, end). A match that runs on into the
/// next word ("… 32 BANK") is cut at the country's IBAN length when the cut falls on a space.
fn ibans<'t>(matches: impl Iterator<Item = Match<'t>> + 't, t: &'t str) -> impl Iterator<Item = (usize, usize)> + 't {
    matches.filter_map(move |m| {
        let s = m.as_str();
        let len = iban_length(&s.as_bytes()[..2])?;
        let mut compact = Vec::with_capacity(len);
        let mut cut = m.end();
        for (i, b) in s.bytes().enumerate() {
            if b == b' ' {
                continue;
            }
            if compact.len() == len {
                cut = m.start() + i;
                break;
            }
            compact.push(b);
        }
        let runs_on = cut < m.end();
        if compact.len() != len || (runs_on && byte_at(t, cut) != Some(b' ')) {
            return None;
        }
        // The cut may leave a trailing space inside the match.
        let end = m.start() + s[..cut - m.start()].trim_end().len();
        iban_ok(&compact).then_some((m.start(), end))
    })
}

struct Iban {
    re: Regex,
}

impl Recognizer for Iban {
    fn name(&self) -> &'static str {
        "iban"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Iban]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b[A-Z]{2}[0-9]{2}[ ]?[A-Z0-9]{4}"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        let runs = find_in_runs(&self.re, t, &text.runs().upper, 12, |r| r.capital_digit);
        for (start, end) in ibans(runs, t) {
            out.push(finding(EntityKind::Iban, start, end, 0.95, &["mod97"]));
        }
    }
}

struct SwiftBic {
    re: Regex,
    iban: Regex,
    /// A UK postcode or a 4–5 digit postal code right after the match, on its line.
    postcode_after: Regex,
}

/// Words that say a code is a BIC, including ISO 20022 element names.
const BIC_WORDS: &[&str] = &["bic", "swift", "swift code", "bic code", "bicfi", "anybic", "bicorbei"];

impl Recognizer for SwiftBic {
    fn name(&self) -> &'static str {
        "swift-bic"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::SwiftBic]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"(?i)\b(?:bic|swift|bicfi|anybic|bicorbei)\b", r"\b[A-Z]{2}[0-9]{2}[ ]?[A-Z0-9]{4}"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_runs(&self.re, t, &text.runs().upper, 8, |r| r.capitals >= 6) {
            // Positions 5-6 are the ISO country of the bank.
            if !iso_country(&m.as_str().as_bytes()[4..6]) {
                continue;
            }
            // Ordinary upper-case words have this shape too ("HOSPITAL"): demand "BIC"/"SWIFT"
            // nearby or an IBAN next to it.
            // A town in capitals before its postcode ("KIRKWALL KW15 1AA") has the shape too.
            if self.postcode_after.is_match(&t[m.end()..]) {
                continue;
            }
            // ISO 20022 messages wrap the code in an element named for it (`<BICFI>`).
            let evidence = if near(t, m.start(), m.end(), BIC_WORDS) {
                "context:bic"
            } else if [before(t, m.start(), 80), after(t, m.end(), 80)]
                .into_iter()
                .any(|w| ibans(self.iban.find_iter(w), w).next().is_some())
            {
                "near-iban"
            } else {
                continue;
            };
            out.push(finding(EntityKind::SwiftBic, m.start(), m.end(), 0.9, &["iso-country", evidence]));
        }
    }
}

struct CryptoWallet {
    base58: Regex,
    bech32: Regex,
    eth: Regex,
}

impl Recognizer for CryptoWallet {
    fn name(&self) -> &'static str {
        "crypto-wallet"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::CryptoWallet]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b[13][1-9A-HJ-NP-Za-km-z]{25}", r"(?i)\bbc1[02-9ac-hj-np-z]{11}", r"\b0x[0-9a-fA-F]{40}\b"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.base58.find_iter(t) {
            if bitcoin_base58(m.as_str()) {
                out.push(finding(EntityKind::CryptoWallet, m.start(), m.end(), 0.95, &["base58check"]));
            }
        }
        for m in self.bech32.find_iter(t) {
            if bitcoin_bech32(m.as_str()) {
                out.push(finding(EntityKind::CryptoWallet, m.start(), m.end(), 0.95, &["bech32"]));
            }
        }
        // An Ethereum address in mixed case carries an EIP-55 checksum (a random hex string
        // passes one time in 2^(letters)); in one case it has none, so it needs wallet context.
        const ETH_WORDS: &[&str] = &[
            "wallet", "eth", "ethereum", "address", "metamask", "erc20", "erc-20", "ether", "send", "usdt", "usdc",
            "crypto",
        ];
        for m in self.eth.find_iter(t) {
            if eip55(&m.as_str()[2..]) {
                out.push(finding(EntityKind::CryptoWallet, m.start(), m.end(), 0.95, &["eip55"]));
            } else if near(t, m.start(), m.end(), ETH_WORDS) {
                out.push(finding(EntityKind::CryptoWallet, m.start(), m.end(), 0.8, &["context:wallet"]));
            }
        }
    }
}
