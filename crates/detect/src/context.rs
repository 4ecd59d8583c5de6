//! Context: bounded windows around a match, keyword tests in them, and the score adjustments
//! that words near a finding make (a card next to "card" is likelier, one next to "order #" is
//! likelier an order number).
//!
//! Windows are bounded slices (a few dozen bytes), so context costs O(findings), never
//! O(text × findings).

use perimeter_types::EntityKind;

use crate::Finding;

/// Bytes of context looked at on each side of a finding.
pub(crate) const WINDOW: usize = 40;

/// Bytes before a finding in which a label word ("order", "ISBN") says what the number is.
const LABEL_WINDOW: usize = 24;

/// Raise for a kind-specific keyword nearby.
const BOOST: f32 = 0.1;
/// Lower for a word that says the number is some other identifier (order, ISBN, version …).
const IDENTIFIER_PENALTY: f32 = 0.45;
/// Lower for a word that says the value is an example.
const EXAMPLE_PENALTY: f32 = 0.15;

/// Words that make a number likelier to be an order, document or software identifier.
#[rustfmt::skip]
const IDENTIFIER_WORDS: &[&str] = &[
    "order", "invoice", "tracking", "reference", "ref", "serial", "isbn", "issn", "version", "build", "sku", "ticket",
    "uuid", "guid", "hash", "sha", "commit", "part",
];
/// Words that make a value likelier to be an illustration.
const EXAMPLE_WORDS: &[&str] = &["example", "sample", "test", "dummy", "fake", "placeholder", "demo"];

/// The end of `prev` after the last line break or sentence end: a label does not reach across
/// either.
fn same_clause(prev: &str) -> &str {
    let b = prev.as_bytes();
    let cut = b.iter().rposition(|&c| c == b'\n' || c == b'\r').map_or(0, |i| i + 1);
    let clause = &b[cut..];
    // The last ". ", else the last "! ", else the last "? " (byte scans: the windows are short).
    let last = |end: u8| clause.windows(2).rposition(|w| w == [end, b' ']);
    match last(b'.').or_else(|| last(b'!')).or_else(|| last(b'?')) {
        Some(i) => &prev[cut + i + 2..],
        None => &prev[cut..],
    }
}

/// An example word that is not part of a domain or address (`user@example.com` says nothing
/// about the phone number next to it).
fn has_example_word(hay: &str) -> bool {
    let h = hay.as_bytes();
    let mut from = 0;
    while let Some(w) = find_word(&hay[from..], EXAMPLE_WORDS) {
        // Where it matched: the first word start at or after `from` spelling `w`.
        let Some(i) = (from..h.len()).find(|&i| {
            (i == 0 || !h[i - 1].is_ascii_alphanumeric())
                && h[i..].len() >= w.len()
                && h[i..i + w.len()].eq_ignore_ascii_case(w.as_bytes())
        }) else {
            return false;
        };
        let prev = i.checked_sub(1).map(|j| h[j]);
        let next = h.get(i + w.len()).copied();
        let dotted = next == Some(b'.') && h.get(i + w.len() + 1).is_some_and(|b| b.is_ascii_alphanumeric());
        if !matches!(prev, Some(b'@' | b'.' | b'/')) && next != Some(b'@') && !dotted {
            return true;
        }
        from = i + w.len();
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

/// Up to `n` bytes of `text` before `pos`, starting on a character boundary. A word cut by
/// the window edge is dropped, so "…Sharma" cut to "Sha" cannot pass for "sha".
pub(crate) fn before(text: &str, pos: usize, n: usize) -> &str {
    let pos = floor_boundary(text, pos.min(text.len()));
    let mut start = pos.saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let b = text.as_bytes();
    if start > 0 && b[start - 1].is_ascii_alphanumeric() {
        while start < pos && b[start].is_ascii_alphanumeric() {
            start += 1;
        }
    }
    &text[start..pos]
}

/// Up to `n` bytes of `text` after `pos`, ending on a character boundary. A word cut by the
/// window edge is dropped.
pub(crate) fn after(text: &str, pos: usize, n: usize) -> &str {
    let pos = floor_boundary(text, pos.min(text.len()));
    let mut end = floor_boundary(text, (pos + n).min(text.len()));
    let b = text.as_bytes();
    if end < b.len() && b[end].is_ascii_alphanumeric() {
        while end > pos && b[end - 1].is_ascii_alphanumeric() {
            end -= 1;
        }
    }
    &text[pos..end]
}

/// The largest character boundary at or below `pos` (`str::floor_char_boundary` is unstable).
pub(crate) fn floor_boundary(text: &str, mut pos: usize) -> usize {
    pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

/// The first of `words` (lowercase ASCII, may contain spaces) that occurs in `hay` as a whole
/// word, ignoring ASCII case. One pass over the word starts of `hay` (found 64 bytes at a time
/// as a bit mask), comparing only words with the same first letter.
pub(crate) fn find_word(hay: &str, words: &[&'static str]) -> Option<&'static str> {
    let h = hay.as_bytes();
    let firsts = first_letters(words);
    let mut prev_alnum = 0;
    for (block, chunk) in h.chunks(64).enumerate() {
        let alnum = alnum_mask(chunk);
        let starts = alnum & !((alnum << 1) | prev_alnum);
        prev_alnum = alnum >> 63;
        if let Some(w) = word_at_starts(h, block * 64, starts, firsts, words) {
            return Some(w);
        }
    }
    None
}

/// The words of a window of up to 64 bytes, found once for several lists: the same answers as
/// [`find_word`] on the window.
pub(crate) struct Words<'a> {
    hay: &'a [u8],
    starts: u64,
}

impl<'a> Words<'a> {
    /// `None` for a window longer than 64 bytes.
    pub(crate) fn new(hay: &'a str) -> Option<Words<'a>> {
        let h = hay.as_bytes();
        (h.len() <= 64).then(|| {
            let alnum = alnum_mask(h);
            Words { hay: h, starts: alnum & !(alnum << 1) }
        })
    }

    /// The first of `words` that occurs as a whole word, as [`find_word`] gives it.
    pub(crate) fn find(&self, words: &[&'static str]) -> Option<&'static str> {
        word_at_starts(self.hay, 0, self.starts, first_letters(words), words)
    }
}

/// Bit `j` set when byte `j` of a block of up to 64 bytes is an ASCII letter or digit.
fn alnum_mask(block: &[u8]) -> u64 {
    let mut flags = [0u8; 64];
    for (f, &b) in flags.iter_mut().zip(block) {
        *f = u8::from(b.is_ascii_alphanumeric());
    }
    crate::scope::pack(&flags)
}

/// The first letters of `words`, as a set of [`letter_bit`]s.
fn first_letters(words: &[&'static str]) -> u64 {
    words.iter().filter_map(|w| w.as_bytes().first()).fold(0, |m, &b| m | letter_bit(b))
}

/// The first of `words` at the word starts `starts` (bits of the block at `base` of `h`), in
/// order of position, then of the list.
fn word_at_starts(h: &[u8], base: usize, mut starts: u64, firsts: u64, words: &[&'static str]) -> Option<&'static str> {
    while starts != 0 {
        let i = base + starts.trailing_zeros() as usize;
        starts &= starts - 1;
        let first = h[i].to_ascii_lowercase();
        if firsts & letter_bit(first) == 0 {
            continue;
        }
        for w in words {
            let wb = w.as_bytes();
            if wb.first() == Some(&first)
                && h.len() - i >= wb.len()
                && h[i..i + wb.len()].eq_ignore_ascii_case(wb)
                && h.get(i + wb.len()).is_none_or(|b| !b.is_ascii_alphanumeric())
            {
                return Some(w);
            }
        }
    }
    None
}

/// A bit for each lowercase letter and digit (the first letters of a word list, as a set);
/// none for other bytes, which start no word.
fn letter_bit(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => 1 << (b - b'0'),
        b'a'..=b'z' => 1 << (b - b'a' + 10),
        _ => 0,
    }
}

/// True when a kind-appropriate keyword is within [`WINDOW`] bytes before `start` or after `end`.
pub(crate) fn near(text: &str, start: usize, end: usize, words: &[&'static str]) -> bool {
    find_word(before(text, start, WINDOW), words).is_some() || find_word(after(text, end, WINDOW), words).is_some()
}

/// How the words around a finding of this kind change its score.
struct KindContext {
    boost: &'static [&'static str],
    evidence: &'static str,
    identifier_penalty: bool,
    example_penalty: bool,
}

#[rustfmt::skip]
const PHONE_WORDS: &[&str] =
    &["phone", "tel", "telephone", "mobile", "mob", "cell", "call", "fax", "contact", "whatsapp", "sms", "dial"];
#[rustfmt::skip]
const CARD_WORDS: &[&str] = &[
    "card", "credit", "debit", "visa", "mastercard", "amex", "american express", "discover", "maestro", "jcb",
    "diners", "unionpay", "payment", "pan", "cc", "ccn", "cvv", "cvc", "expiry", "exp", "billing",
];
#[rustfmt::skip]
const IP_WORDS: &[&str] =
    &["ip", "ipv4", "ipv6", "address", "host", "server", "client", "remote", "src", "dst", "gateway", "dns"];

fn kind_context(kind: EntityKind) -> Option<KindContext> {
    use EntityKind as K;
    let c = |boost, evidence, identifier_penalty, example_penalty| {
        Some(KindContext { boost, evidence, identifier_penalty, example_penalty })
    };
    match kind {
        K::Email => c(&["email", "e-mail", "mail", "contact", "mailto"], "context:email", false, false),
        K::Phone => c(PHONE_WORDS, "context:phone", true, true),
        K::CreditCard => c(CARD_WORDS, "context:card", true, true),
        K::Iban => c(&["iban", "account", "bank", "sepa", "transfer"], "context:iban", false, true),
        K::UsSsn => c(&["ssn", "social security"], "context:ssn", true, true),
        K::UsItin => c(&["itin", "taxpayer", "tax id"], "context:itin", true, true),
        K::UkNino => c(&["ni", "nino", "national insurance", "insurance number"], "context:nino", true, true),
        K::UkNhs => c(&["nhs", "health", "patient"], "context:nhs", true, true),
        K::IpAddress => c(IP_WORDS, "context:ip", true, false),
        K::MacAddress => c(&["mac", "ether", "ethernet", "hwaddr", "bssid", "wifi"], "context:mac", false, false),
        K::CryptoWallet => {
            c(&["wallet", "bitcoin", "btc", "eth", "ethereum", "crypto", "address"], "context:wallet", false, true)
        }
        K::AwsAccessKey
        | K::AwsSecretKey
        | K::GithubToken
        | K::SlackToken
        | K::StripeKey
        | K::GoogleApiKey
        | K::OpenaiApiKey
        | K::Jwt
        | K::PrivateKey
        | K::Password
        | K::GenericSecret => c(&[], "", false, true),
        _ => None,
    }
}

/// Applies the kind's context words to a finding (offsets into `text`, the normalised text).
pub(crate) fn adjust(text: &str, f: &mut Finding) {
    let Some(ctx) = kind_context(f.kind) else { return };
    let prev = before(text, f.start, WINDOW);
    let next = after(text, f.end, WINDOW);
    // Each window's words are found once for all the lists below.
    let (prev_words, next_words) = (Words::new(prev), Words::new(next));
    let found_in = |words: &Option<Words<'_>>, hay: &str, list: &[&'static str]| match words {
        Some(w) => w.find(list),
        None => find_word(hay, list),
    };
    let found = |list: &[&'static str]| {
        found_in(&prev_words, prev, list).or_else(|| found_in(&next_words, next, list)).is_some()
    };
    if !ctx.boost.is_empty() && found(ctx.boost) {
        f.score += BOOST;
        f.evidence.push(ctx.evidence);
    }
    // Labels come right before what they label ("Order #…", "ISBN-13: …", "build 10.0…"); a
    // word further away ("…staging build.\nCall me on …") says nothing about this number.
    if ctx.identifier_penalty && find_word(same_clause(before(text, f.start, LABEL_WINDOW)), IDENTIFIER_WORDS).is_some()
    {
        f.score -= IDENTIFIER_PENALTY;
        f.evidence.push("context:identifier");
    }
    // `has_example_word` starts with this search, so a window without an example word is
    // settled by it.
    let example =
        |words: &Option<Words<'_>>, hay: &str| found_in(words, hay, EXAMPLE_WORDS).is_some() && has_example_word(hay);
    if ctx.example_penalty && (example(&prev_words, prev) || example(&next_words, next)) {
        f.score -= EXAMPLE_PENALTY;
        f.evidence.push("context:example");
    }
    f.score = (f.score.clamp(0.0, 1.0) * 100.0).round() / 100.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stay_on_char_boundaries() {
        let t = "ééééé card";
        assert_eq!(before(t, 5, 3), "é");
        assert_eq!(after(t, 0, 3), "é");
        assert_eq!(after(t, 1, 3), "é");
        assert_eq!(before(t, t.len(), 100), t);
        // Cut words are dropped, not matched as shorter words.
        assert_eq!(after("x regards, Priya Sharma", 0, 19), "x regards, Priya ");
        assert_eq!(before("Sharma 4111", 9, 6), " 41");
        assert_eq!(before("Sharma 4111", 7, 3), " ");
    }

    #[test]
    fn words_match_whole_words_only() {
        assert_eq!(find_word("Order #", &["order"]), Some("order"));
        assert_eq!(find_word("reorder", &["order"]), None);
        assert_eq!(find_word("the Social Security no", &["ssn", "social security"]), Some("social security"));
        assert_eq!(find_word("cards", &["card"]), None);
        assert!(has_example_word("an example card"));
        assert!(!has_example_word("mail jo@example.com"));
        assert_eq!(find_word("my DOB:", &["dob", "born"]), Some("dob"));
    }
}
