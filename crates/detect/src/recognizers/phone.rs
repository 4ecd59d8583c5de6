//! PHONE: candidates are runs of digits with `+`, spaces, dashes, dots and parentheses; a
//! candidate is a phone number when libphonenumber's metadata (shipped by the `phonenumber`
//! crate) says it is a valid number of its country.
//!
//! We match the metadata's patterns with regexes compiled here, once per country, instead of
//! calling `phonenumber::parse(..).is_valid()`: the crate matches through one global
//! 100-entry regex cache behind a mutex, which thrashes on the larger countries (UK and North
//! American checks took 0.3-5 ms each, and every thread would queue on the mutex). The
//! decision is the same as libphonenumber's `isValidNumber`: the national significant number
//! matches the country's general pattern and the pattern of one number type, with a possible
//! length.
//!
//! Numbers without `+` are read as UK (trunk `0`) or North American (10 digits, or 11 starting
//! with `1`) numbers; a trunk-`0` number that is not a UK one may still be the national mobile
//! number of another European plan ([`TRUNK_ZERO_MOBILE`]), accepted only with a phone word nearby
//! or in the French five-pair layout. Ofcom's drama ranges (07700 900xxx …), reserved for fiction and common in
//! synthetic records, are accepted with their own evidence.

use std::collections::HashMap;
use std::sync::OnceLock;

use perimeter_types::EntityKind;
use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};

use super::{byte_before, compile, continues_token, finding, group_lengths};
use crate::context::{after, before, near};
use crate::scope::find_in_runs;
use crate::{DetectError, Finding, NormalizedText, Recognizer};

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    all.push(Box::new(Phone::new()?));
    Ok(())
}

/// Country calling code of the UK and of the North American Numbering Plan.
const UK: u16 = 44;
const NANP: u16 = 1;

/// One metadata pattern, anchored, with the national number lengths it allows.
struct Pattern {
    re: Regex,
    lengths: Vec<u16>,
}

impl Pattern {
    fn new(d: &Descriptor, fallback_lengths: &[u16]) -> Option<Pattern> {
        // Metadata patterns are written with insignificant whitespace.
        let re = RegexBuilder::new(&format!("^(?:{})$", d.national_number().as_str()))
            .ignore_whitespace(true)
            .unicode(false)
            .build()
            .ok()?;
        let lengths = if d.possible_length().is_empty() { fallback_lengths } else { d.possible_length() };
        Some(Pattern { re, lengths: lengths.to_vec() })
    }

    fn matches(&self, nsn: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(nsn.len() as u16))) && self.re.is_match(nsn)
    }
}

/// One national format: the leading digits it applies to and the pattern whose capture
/// groups are the printed digit groups.
struct Layout {
    leading: Option<Regex>,
    pattern: Regex,
}

/// One region's validity rules.
struct Region {
    general: Pattern,
    types: Vec<Pattern>,
    mobile: Option<Pattern>,
    national_prefix: Option<String>,
    layouts: Vec<Layout>,
}

impl Region {
    fn new(meta: &Metadata) -> Option<Region> {
        let d = meta.descriptors();
        let general = Pattern::new(d.general(), &[])?;
        let kinds = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        let mobile = d.mobile().and_then(|t| Pattern::new(t, &general.lengths));
        let types = kinds.into_iter().flatten().filter_map(|t| Pattern::new(t, &general.lengths)).collect();
        let anchored = |p: &str, whole: bool| {
            let p = if whole { format!("^(?:{p})$") } else { format!("^(?:{p})") };
            RegexBuilder::new(&p).ignore_whitespace(true).unicode(false).build().ok()
        };
        let layouts = meta
            .formats()
            .iter()
            .filter_map(|f| {
                let leading = match f.leading_digits().last() {
                    Some(l) => Some(anchored(l.as_str(), false)?),
                    None => None,
                };
                Some(Layout { leading, pattern: anchored(f.pattern().as_str(), true)? })
            })
            .collect();
        Some(Region { general, types, mobile, national_prefix: meta.national_prefix().map(str::to_owned), layouts })
    }

    /// See [`Countries::national`].
    fn national(&self, digits: &str, groups: Option<&[usize]>) -> Option<()> {
        let nsn = match self.national_prefix.as_deref() {
            Some(p) => digits.strip_prefix(p)?,
            None => digits,
        };
        if !self.valid(nsn) {
            return None;
        }
        if let Some(groups) = groups {
            let mut want = self.layout(nsn)?;
            if let Some(first) = want.first_mut() {
                *first += digits.len() - nsn.len();
            }
            if want != groups {
                return None;
            }
        }
        Some(())
    }

    /// The digit groups libphonenumber prints this national number in (the first format
    /// whose leading digits and pattern fit), national prefix not counted.
    fn layout(&self, nsn: &str) -> Option<Vec<usize>> {
        let f = self
            .layouts
            .iter()
            .find(|f| f.leading.as_ref().is_none_or(|l| l.is_match(nsn)) && f.pattern.is_match(nsn))?;
        let caps = f.pattern.captures(nsn)?;
        Some(caps.iter().skip(1).flatten().map(|m| m.len()).collect())
    }

    fn valid(&self, nsn: &str) -> bool {
        self.general.matches(nsn) && self.types.iter().any(|t| t.matches(nsn))
    }

    fn valid_mobile(&self, nsn: &str) -> bool {
        self.general.matches(nsn) && self.mobile.as_ref().is_some_and(|t| t.matches(nsn))
    }
}

/// Validity rules per country calling code, compiled on first use.
struct Countries {
    by_code: HashMap<u16, OnceLock<Vec<Region>>>,
}

impl Countries {
    fn new() -> Self {
        let mut by_code = HashMap::new();
        for meta in DATABASE.iter() {
            by_code.entry(meta.country_code()).or_insert_with(OnceLock::new);
        }
        Countries { by_code }
    }

    fn regions(&self, code: u16) -> &[Region] {
        let Some(cell) = self.by_code.get(&code) else { return &[] };
        cell.get_or_init(|| DATABASE.by_code(&code).unwrap_or_default().into_iter().filter_map(Region::new).collect())
    }

    /// The national significant number is valid in some region with this calling code (also
    /// after dropping a national prefix written after the code, as in "+44 (0)20 …").
    fn valid(&self, code: u16, nsn: &str) -> bool {
        self.regions(code).iter().any(|r| {
            r.valid(nsn)
                || r.national_prefix.as_deref().and_then(|p| nsn.strip_prefix(p)).is_some_and(|rest| r.valid(rest))
        })
    }

    /// A number written without `+` is valid in the plan of `code` (the national prefix, if
    /// the plan dials one, written before it). With `groups`, the written digit groups must
    /// also be the plan's own layout.
    fn national(&self, code: u16, digits: &str, groups: Option<&[usize]>) -> bool {
        self.regions(code).iter().any(|r| r.national(digits, groups).is_some())
    }

    /// The national significant number is a valid mobile number in some region with this code.
    fn valid_mobile(&self, code: u16, nsn: &str) -> bool {
        self.regions(code).iter().any(|r| r.valid_mobile(nsn))
    }

    /// Splits `+digits` into a calling code (1-3 digits; no code is a prefix of another) and
    /// the rest.
    fn split<'d>(&self, digits: &'d str) -> Option<(u16, &'d str)> {
        (1..=3).filter(|&n| n < digits.len()).find_map(|n| {
            let code: u16 = digits[..n].parse().ok()?;
            self.by_code.contains_key(&code).then(|| (code, &digits[n..]))
        })
    }
}

pub(super) struct Phone {
    re: Regex,
    date: Regex,
    countries: Countries,
}

impl Phone {
    fn new() -> Result<Self, DetectError> {
        let countries = Countries::new();
        // The two plans numbers without `+` are read in, compiled now rather than on the first
        // request.
        countries.regions(UK);
        countries.regions(NANP);
        for (code, _) in NATIONAL_PLANS {
            countries.regions(code);
        }
        Ok(Phone {
            re: compile("phone", r"(?:\+[ \t]?[0-9]|\(|\b[0-9])[0-9 .\-()]{5,24}[0-9]\b")?,
            // A date anywhere in the run ("2025-10-11 12:30" gives "2025-10-11 12").
            date: compile(
                "phone",
                r"^[0-9]{1,2}[./\-][0-9]{1,2}[./\-][0-9]{2}$|[0-9]{4}[./\-][0-9]{1,2}[./\-][0-9]{1,2}|[0-9]{1,2}[./\-][0-9]{1,2}[./\-][0-9]{4}",
            )?,
            countries,
        })
    }

    /// Evidence for a valid number, if it is one.
    fn verdict(&self, digits: &str, international: bool) -> Option<&'static str> {
        let uk = |nsn: &str| {
            if self.countries.valid(UK, nsn) {
                Some("libphonenumber")
            } else {
                ofcom_drama(nsn).then_some("ofcom-drama-range")
            }
        };
        if international {
            let (code, nsn) = self.countries.split(digits)?;
            return match code {
                UK => uk(nsn.strip_prefix('0').unwrap_or(nsn)),
                _ => self.countries.valid(code, nsn).then_some("libphonenumber"),
            };
        }
        if let Some(nsn) = digits.strip_prefix('0') {
            return uk(nsn).or_else(|| {
                TRUNK_ZERO_MOBILE
                    .iter()
                    .any(|&code| self.countries.valid_mobile(code, nsn))
                    .then_some("libphonenumber-national-mobile")
            });
        }
        let nsn = if digits.len() == 11 { digits.strip_prefix('1')? } else { digits };
        (nsn.len() == 10 && self.countries.valid(NANP, nsn)).then_some("libphonenumber")
    }
}

impl Phone {
    /// A number without `+` that is not a UK or North American one, read in another national
    /// plan: one the words around it point to ([`hinted_plans`]), or one whose own layout it
    /// is written in, with three groups or more (`04 12 34 56 78` in France, `612 34 56 78` in
    /// Spain). Only numbers valid in that plan; bare digits only after a phone word; the `3-3-4`
    /// layout, which North America shares, only with words.
    fn elsewhere(&self, t: &str, start: usize, end: usize, s: &str, digits: &str) -> Option<&'static str> {
        let groups: Vec<usize> = group_lengths(s).collect();
        if groups.len() < 2 && !near(t, start, end, NATIONAL_PHONE_WORDS) {
            return None;
        }
        if hinted_plans(t, start, end).into_iter().any(|code| self.countries.national(code, digits, None)) {
            return Some("libphonenumber-region");
        }
        // Two groups (`0171 2345678`) are as often a batch or account number.
        if groups.len() < 3 || groups == [3, 3, 4] {
            return None;
        }
        NATIONAL_PLANS
            .iter()
            .any(|&(code, _)| self.countries.national(code, digits, Some(&groups)))
            .then_some("libphonenumber-layout")
    }
}

/// Ofcom's ranges reserved for drama and examples (unallocated, so libphonenumber calls some of
/// them invalid, but printed exactly like real numbers). `nsn` is the national number without
/// the trunk 0.
fn ofcom_drama(nsn: &str) -> bool {
    const RANGES: &[&str] = &[
        "1134960", "1144960", "1154960", "1164960", "1174960", "1184960", "1214960", "1314960", "1414960", "1514960",
        "1614960", "1914980", "2079460", "2896496", "2920180", "1632960", "7700900", "8081570", "9098790", "3069990",
    ];
    nsn.len() == 10 && RANGES.iter().any(|r| nsn.starts_with(r))
}

/// European plans that also dial a trunk `0` at home (Germany, France, the Netherlands,
/// Belgium, Austria, Switzerland, Ireland). A national number that is not a UK one is accepted
/// when it is a valid *mobile* number of one of them, and only with a phone word nearby or in
/// the French five-pair layout (`06 12 34 56 78`), which other numbers rarely take.
const TRUNK_ZERO_MOBILE: [u16; 7] = [49, 33, 31, 32, 43, 41, 353];

/// Phone words in the languages of [`TRUNK_ZERO_MOBILE`] (and English).
#[rustfmt::skip]
const NATIONAL_PHONE_WORDS: &[&str] = &[
    "phone", "tel", "telephone", "mobile", "mob", "cell", "whatsapp", "sms", "contact", "call",
    "handy", "handynummer", "mobil", "mobilnummer", "telefon", "telefonnummer", "rufnummer", "tél", "téléphone",
    "portable", "mobiel", "telefoon", "telefoonnummer", "gsm", "fon",
];

/// `0X XX XX XX XX`: the French way of writing a ten-digit number.
fn french_pairs(s: &str) -> bool {
    let groups: Vec<usize> = group_lengths(s).collect();
    s.starts_with('0') && groups == [2, 2, 2, 2, 2]
}

/// Plans a number written without `+` may belong to, besides the UK and North America, with
/// the words that say a text is from there or in its language: function words, phone and
/// address words, country and city names, the country's top-level domain (as in an e-mail
/// address nearby). A number is read in a plan when two of its words are near it
/// ([`hinted_plans`]), or when it is written in the plan's own layout ([`Countries::national`]).
#[rustfmt::skip]
const NATIONAL_PLANS: [(u16, &[&str]); 12] = [
    (33, &["le", "la", "les", "des", "du", "et", "est", "avec", "pour", "au", "aux", "une", "tél", "téléphone",
        "portable", "rue", "madame", "monsieur", "mme", "bonjour", "cordialement", "merci", "né", "née", "numéro",
        "france", "paris", "lyon", "marseille", "toulouse", "fr"]),
    (34, &["el", "los", "las", "del", "y", "con", "una", "teléfono", "móvil", "movil", "calle", "señor",
        "señora", "sra", "hola", "gracias", "paciente", "nacimiento", "fecha", "informe", "contacto", "españa",
        "spain", "madrid", "barcelona", "sevilla", "valencia", "es"]),
    (39, &["il", "gli", "della", "di", "che", "sono", "ti", "cell", "cellulare", "telefono", "via", "caro", "cara",
        "ciao", "grazie", "saluti", "signor", "signora", "bonifico", "italia", "italy", "roma", "milano", "napoli",
        "torino", "it"]),
    (31, &["het", "een", "van", "niet", "en", "telefoon", "mobiel", "geboren", "straat", "patiënt", "huisarts",
        "verslag", "nederland", "netherlands", "amsterdam", "rotterdam", "utrecht", "nl"]),
    (49, &["der", "die", "das", "und", "nicht", "ist", "telefon", "handy", "mobil", "geboren", "straße", "strasse",
        "herr", "frau", "deutschland", "germany", "berlin", "münchen", "hamburg", "köln"]),
    (32, &["belgique", "belgië", "belgium", "bruxelles", "brussel", "antwerpen", "be"]),
    (43, &["österreich", "austria", "wien", "graz"]),
    (41, &["schweiz", "suisse", "switzerland", "zürich", "genève", "bern", "ch"]),
    (353, &["ireland", "dublin", "cork", "eircode", "ie"]),
    (351, &["telemóvel", "telefone", "rua", "obrigado", "obrigada", "não", "portugal", "lisboa", "pt", "os",
        "em", "uma"]),
    (48, &["ul", "pan", "pani", "nie", "jest", "telefonu", "tel", "polska", "poland", "warszawa", "kraków", "pl"]),
    (46, &["och", "är", "att", "för", "med", "inte", "jag", "hej", "tack", "mvh", "tfn", "mobilnr", "gatan", "vägen",
        "sverige", "sweden", "stockholm", "göteborg", "malmö", "uppsala", "se"]),
];

/// The words of [`NATIONAL_PLANS`], bucketed by byte length and first byte, each with the first
/// plan that lists it (a word two plans list, "geboren", counts for the first only) and its
/// number among the distinct words. Built once; [`hinted_plans`] looks each word of a window up
/// here instead of comparing it with every plan's list.
struct PlanWords {
    /// Index `len * 256 + first byte`; `len` up to [`PlanWords::MAX_LEN`].
    buckets: Vec<Vec<(&'static str, u8, u8)>>,
}

impl PlanWords {
    const MAX_LEN: usize = 16;

    fn get() -> &'static PlanWords {
        static WORDS: OnceLock<PlanWords> = OnceLock::new();
        WORDS.get_or_init(|| {
            let mut buckets = vec![Vec::new(); (Self::MAX_LEN + 1) * 256];
            let mut distinct: Vec<&'static str> = Vec::new();
            for (plan, (_, words)) in NATIONAL_PLANS.iter().enumerate() {
                for &w in *words {
                    if distinct.contains(&w) || w.is_empty() || w.len() > Self::MAX_LEN {
                        continue;
                    }
                    let id = distinct.len() as u8;
                    distinct.push(w);
                    buckets[w.len() * 256 + usize::from(w.as_bytes()[0])].push((w, plan as u8, id));
                }
            }
            PlanWords { buckets }
        })
    }

    /// The plan and word number of `lower` (a lowercase word), if a plan lists it.
    fn lookup(&self, lower: &[u8]) -> Option<(u8, u8)> {
        let first = *lower.first()?;
        if lower.len() > Self::MAX_LEN {
            return None;
        }
        self.buckets[lower.len() * 256 + usize::from(first)]
            .iter()
            .find(|(w, _, _)| w.as_bytes() == lower)
            .map(|&(_, plan, id)| (plan, id))
    }
}

/// The plans of [`NATIONAL_PLANS`] with at least two of their words near `start..end`, most
/// words first. Each distinct word counts once, for the first plan that lists it.
fn hinted_plans(t: &str, start: usize, end: usize) -> Vec<u16> {
    let table = PlanWords::get();
    let mut counts = [0u8; NATIONAL_PLANS.len()];
    let mut seen = [0u64; 4];
    let mut word = String::new();
    let mut ascii = [0u8; 16];
    for part in [before(t, start, 400), after(t, end, 200)] {
        for w in alphanumeric_words(part).filter(|w| w.len() <= 16) {
            let hit = if w.is_ascii() {
                let lower = &mut ascii[..w.len()];
                lower.copy_from_slice(w.as_bytes());
                lower.make_ascii_lowercase();
                table.lookup(lower)
            } else {
                word.clear();
                word.extend(w.chars().flat_map(char::to_lowercase));
                table.lookup(word.as_bytes())
            };
            if let Some((plan, id)) = hit {
                let (slot, bit) = (usize::from(id / 64), 1u64 << (id % 64));
                if seen[slot] & bit == 0 {
                    seen[slot] |= bit;
                    counts[usize::from(plan)] = counts[usize::from(plan)].saturating_add(1);
                }
            }
        }
    }
    let mut plans: Vec<(u8, u16)> =
        NATIONAL_PLANS.iter().zip(counts).filter(|(_, n)| *n >= 2).map(|((code, _), n)| (n, *code)).collect();
    plans.sort_by_key(|&(n, _)| std::cmp::Reverse(n));
    plans.into_iter().map(|(_, code)| code).collect()
}

/// The non-empty runs of alphanumeric characters of `s` (the words of
/// `s.split(|c: char| !c.is_alphanumeric())`), reading ASCII a byte at a time.
fn alphanumeric_words(s: &str) -> impl Iterator<Item = &str> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        // The alphanumeric character at `at`, if it is one, and its length.
        let step = |at: usize| -> (bool, usize) {
            match b[at] {
                c if c.is_ascii() => (c.is_ascii_alphanumeric(), 1),
                _ => s[at..].chars().next().map_or((false, 1), |c| (c.is_alphanumeric(), c.len_utf8())),
            }
        };
        while i < b.len() {
            let (alnum, len) = step(i);
            if alnum {
                break;
            }
            i += len;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        while i < b.len() {
            let (alnum, len) = step(i);
            if !alnum {
                break;
            }
            i += len;
        }
        Some(&s[start..i])
    })
}

/// Words that make ten bare digits a phone number ("call" and "contact" are too common in code).
const BARE_PHONE_WORDS: &[&str] = &["phone", "tel", "telephone", "mobile", "mob", "cell", "fax", "whatsapp", "sms"];

/// Where the bracket opened just before `s` closes (brackets nested inside it counted), as an
/// offset into `s`; `None` when it does not close in `s`.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The label right before a number is a compound naming another kind of number
/// ("Polisnummer:", "Kundennummer", "ärendenummer"), not a phone one ("Telefonnummer",
/// "Handynummer", "Rufnummer").
fn other_number_label(t: &str, start: usize) -> bool {
    let prev = before(t, start, 32);
    let line = prev.rsplit('\n').next().unwrap_or(prev);
    let label = line.trim_end_matches([' ', '\t', ':', '.', '#', '=', '(']);
    let word = label.rsplit(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    if word.len() <= "nummer".len() || !word.is_char_boundary(word.len() - "nummer".len()) {
        return false;
    }
    let (stem, suffix) = word.split_at(word.len() - "nummer".len());
    const PHONE_STEMS: &[&str] = &["tel", "fon", "phon", "handy", "mobil", "gsm", "fax", "ruf", "kontakt", "contact"];
    if !suffix.eq_ignore_ascii_case("nummer") {
        return false;
    }
    let stem = stem.to_lowercase();
    !PHONE_STEMS.iter().any(|p| stem.contains(p))
}

/// Two separators in a row (other than a space after a closing parenthesis).
fn has_double_separator(s: &str) -> bool {
    s.as_bytes().windows(2).any(|w| {
        let sep = |b: u8| matches!(b, b' ' | b'.' | b'-' | b'\t');
        sep(w[0]) && sep(w[1])
    })
}

impl Recognizer for Phone {
    fn name(&self) -> &'static str {
        "phone"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Phone]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"[0-9][0-9 .\-()]{5,24}[0-9]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        // A number needs seven digits (checked below), all in one run.
        for m in find_in_runs(&self.re, t, &text.runs().numeric, 7, |r| r.digits >= 7) {
            // "(020 7946 0958)": a number in brackets ends before the closing one, which the
            // match (ending on a digit) leaves out; the opening one is not part of it. When the
            // closing bracket is inside the match, the match ran on into the next number
            // ("((212) 723-2437) -40.00"): the number ends before that bracket.
            let ms = m.as_str();
            let (start, end) = match ms.strip_prefix('(').map(closing_bracket) {
                // Only a whole number in the brackets (an area code in brackets is followed by
                // the rest of its number).
                Some(Some(close))
                    if ms[1..].starts_with(|c: char| c.is_ascii_digit() || c == '(')
                        && ms[1..1 + close].bytes().filter(u8::is_ascii_digit).count() >= 7 =>
                {
                    (m.start() + 1, m.start() + 1 + close)
                }
                Some(None)
                    if t.as_bytes().get(m.end()) == Some(&b')')
                        && ms[1..].starts_with(|c: char| c.is_ascii_digit() || c == '(') =>
                {
                    (m.start() + 1, m.end())
                }
                _ => (m.start(), m.end()),
            };
            if !t[..end].ends_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let s = &t[start..end];
            // "+44 (0)20 …": the bracketed trunk zero is not dialled from abroad. A match is at
            // most 28 bytes, so both fit on the stack.
            let mut dialled_buf = [0u8; 32];
            let dialled = match s.find("(0)") {
                Some(i) if s.starts_with('+') && s.len() - 3 <= dialled_buf.len() => {
                    let (head, tail) = (&s.as_bytes()[..i], &s.as_bytes()[i + 3..]);
                    dialled_buf[..head.len()].copy_from_slice(head);
                    dialled_buf[head.len()..head.len() + tail.len()].copy_from_slice(tail);
                    std::str::from_utf8(&dialled_buf[..head.len() + tail.len()]).unwrap_or(s)
                }
                _ => s,
            };
            let mut digit_buf = [0u8; 16];
            let mut n = 0;
            for b in dialled.bytes().filter(u8::is_ascii_digit) {
                if let Some(slot) = digit_buf.get_mut(n) {
                    *slot = b;
                }
                n += 1;
            }
            if !(7..=15).contains(&n) || continues_token(t, start, end) {
                continue;
            }
            let digits = std::str::from_utf8(&digit_buf[..n]).unwrap_or("");
            // At most one pair of parentheses, balanced, around a short area code.
            let (open, close) = (s.matches('(').count(), s.matches(')').count());
            if open != close || open > 1 || s.find('(') > s.find(')') {
                continue;
            }
            // Decimals, dates, dotted quads and version-date runs ("0.3.0 - 2022-05-19") are not
            // phone numbers: phone groups have two digits or more (after a leading country code
            // or trunk 1), use one kind of separator besides spaces, and never two in a row.
            // (These tests only reject, so the cheap ones go first; every date has two
            // separators, so the date pattern runs only on numbers with two.)
            let dots = s.matches('.').count();
            if dots == 1 || (dots == 3 && group_lengths(s).all(|g| g <= 3)) {
                continue;
            }
            if (s.contains('.') && s.contains('-')) || has_double_separator(s) {
                continue;
            }
            // One-digit groups only as the country code or right after it (+33 1 42 …), or as
            // a North American trunk 1 (1 800 …).
            let skip = if s.starts_with('+') { 2 } else { 1 };
            if group_lengths(dialled).skip(skip).any(|g| g < 2) {
                continue;
            }
            // A digit group glued to a longer digit run before it.
            if byte_before(t, start).is_some_and(|b| b.is_ascii_digit()) {
                continue;
            }
            if s.bytes().filter(|b| matches!(b, b'.' | b'/' | b'-')).count() >= 2 && self.date.is_match(s) {
                continue;
            }
            let plus = s.starts_with('+');
            let international = plus || digits.starts_with("00");
            let digits = if !plus && international { &digits[2..] } else { digits };
            let mut evidence = self.verdict(digits, international);
            if evidence == Some("libphonenumber-national-mobile")
                && !french_pairs(s)
                && !near(t, start, end, NATIONAL_PHONE_WORDS)
            {
                evidence = None;
            }
            if evidence.is_none() && !international {
                evidence = self.elsewhere(t, start, end, s, digits);
            }
            let Some(evidence) = evidence else { continue };
            if other_number_label(t, start) {
                continue;
            }
            // Ten bare digits are as often an integer (2147483648) as a North American number:
            // only with a phone word nearby.
            let bare = s.bytes().all(|b| b.is_ascii_digit());
            if bare && !international && !digits.starts_with('0') && !near(t, start, end, BARE_PHONE_WORDS) {
                continue;
            }
            let score = match evidence {
                "libphonenumber" if international => 0.85,
                "libphonenumber" => 0.8,
                "libphonenumber-national-mobile" | "libphonenumber-region" | "libphonenumber-layout" => 0.7,
                _ => 0.75,
            };
            out.push(finding(EntityKind::Phone, start, end, score, &[evidence]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_words_have_byte_ids() {
        // Word numbers are `u8`s and index a 256-bit set.
        let distinct: std::collections::HashSet<&str> =
            NATIONAL_PLANS.iter().flat_map(|(_, w)| w.iter().copied()).collect();
        assert!(distinct.len() <= 256);
        assert!(distinct.iter().all(|w| !w.is_empty() && w.len() <= PlanWords::MAX_LEN));
        // Listed by Dutch and German, counted for Dutch (the first).
        let plan = PlanWords::get().lookup(b"geboren").map(|(plan, _)| usize::from(plan));
        assert_eq!(plan.map(|p| NATIONAL_PLANS[p].0), Some(31));
        assert_eq!(PlanWords::get().lookup(b"telefonx"), None);
    }

    #[test]
    fn words_split_like_str_split() {
        for s in ["", " ", "a", "Tél: 06 12, né à Köln—über x1 «rue»", "ß.İx  ǅ 9é", "end."] {
            let want: Vec<&str> = s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
            assert_eq!(alphanumeric_words(s).collect::<Vec<_>>(), want, "{s}");
        }
    }

    #[test]
    fn agrees_with_phonenumber_on_samples() {
        let p = Phone::new().unwrap();
        #[rustfmt::skip]
        let samples = [
            "+442079460958", "+441134960512", "+447911123456", "+12125550123", "+14155552671", "+19434765919",
            "+4930123456", "+33142685300", "+61291234567", "+4412345", "+999123456789",
        ];
        for e164 in samples {
            let ours = p.verdict(&e164[1..], true).is_some_and(|e| e == "libphonenumber");
            let theirs = phonenumber::parse(None, e164).is_ok_and(|n| n.is_valid());
            assert_eq!(ours, theirs, "{e164}");
        }
        assert_eq!(p.verdict("07700900392", false), Some("ofcom-drama-range"));
        assert_eq!(p.verdict("01134960512", false), Some("libphonenumber"));
        assert_eq!(p.verdict("2125550123", false), Some("libphonenumber"));
        assert_eq!(p.verdict("12125550123", false), Some("libphonenumber"));
        assert_eq!(p.verdict("1234567890", false), None);
        assert_eq!(p.verdict("0123", false), None);
    }
}
