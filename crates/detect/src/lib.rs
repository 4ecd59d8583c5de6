//! Sensitive-data detection: text in, findings out. Pure — no IO, no clock, no environment.
//!
//! # How a scan works
//!
//! 1. **Normalise** ([`NormalizedText`]). ASCII is scanned as is. Other text gets NFKC, loses
//!    zero-width characters and soft hyphens, and has no-break spaces and Unicode dashes folded,
//!    keeping a byte map back to the original, so `４１１１` and `4111\u{200B}1111` are seen as digits
//!    while every [`Finding`] still points at the original bytes, on character boundaries.
//! 2. **Prefilter**. One [`regex::RegexSet`] pass over the text says which cheap trigger
//!    patterns occur anywhere (an `@`, a run of 13 digits, `AKIA`, `-----BEGIN`, "passport" …).
//!    Only the recognisers whose triggers fired run, so prose with no findings costs one
//!    automaton pass whatever the number of kinds. (Triggers with Unicode classes are tried
//!    one by one instead: they made the set's automaton twice as slow.)
//! 3. **Recognise**. Each [`Recognizer`] finds format matches and keeps those that pass their
//!    validator or their required context (a date is a DATE_OF_BIRTH only after "DOB"/"born").
//!    The built-in recognisers search only where their pattern can match (runs of digits or
//!    capitals, lines holding a keyword), with the same matches as a search of the whole text.
//! 4. **Context**. Words within 40 bytes raise the score ("card", "IBAN", "phone") or lower it
//!    ("order #", "ISBN", "version" a lot; "example", "test" a little). Findings below
//!    [`MIN_SCORE`] are dropped.
//! 5. **Resolve overlaps**: higher score wins, then the longer span, then the more specific kind.
//!
//! # Recognisers and validators
//!
//! | kind | found by | kept when |
//! |---|---|---|
//! | EMAIL | address pattern; `jane dot doe at example dot com`, `(at)`/`[dot]` forms; URL-encoded `jane%40example.com` | not URL userinfo (`user:pass@host`, `token@host`), SSH remote or `@2x.png` |
//! | PHONE | digit runs with `+ - . ( )` and spaces (a bracketed number without its brackets, also when it runs on into the next number) | valid per libphonenumber metadata (UK/NANP without `+`; a DE/FR/NL/BE/AT/CH/IE national mobile number with a phone word nearby or in French pairs; a number valid in the national plan that nearby language words, country/city names or TLDs point to, or written in a plan's own three-or-more-group layout, e.g. `05 61 …` pairs, Spanish `6XX XX XX XX`, Swedish `070-123 45 67`); Ofcom drama ranges; not after a label naming another number (`Polisnummer:`) |
//! | CREDIT_CARD | 13–19 digits, card grouping, mixed separators (a number printed after it, like an expiry, cut off at a group end) | Luhn + network prefix and length |
//! | IBAN | country, check digits, groups of four | country length table + mod-97 |
//! | SWIFT_BIC | 8/11 upper-case characters | ISO country + "BIC"/"SWIFT" (also ISO 20022 `<BICFI>`) or an IBAN nearby; not a town before its postcode |
//! | US_SSN, US_ITIN | 3-2-4 with dashes/spaces; 9 digits after "SSN"/"ITIN" | area/group/serial rules; ITIN groups |
//! | UK_NINO | two letters, six digits, A–D | HMRC prefix rules |
//! | UK_NHS | 3-3-4 or ten digits after "NHS"; ten digits in a `nhs_number`/`NHS No` column | mod-11 check digit |
//! | PASSPORT | 6–9 capitals/digits after "passport" (and DE/ES/FR/IT/PL/NL labels), or after a number label a few lines on; cells of a `Passport` table column | context only (score 0.7) |
//! | IP_ADDRESS | dotted quads; IPv6 candidates | octets ≤ 255, not a version, not a CIDR network (`10.20.0.0/16`); `Ipv6Addr` parses |
//! | MAC_ADDRESS | six octets with `:`/`-`, Cisco dotted | not all-zero or broadcast |
//! | DATE_OF_BIRTH | numeric and written dates (English, French, German, Dutch, Spanish, Italian, Portuguese, Polish and Swedish month names; `17NOV1979`) | within 30 bytes after DOB/born/date of birth or a FR/DE/ES/PL/NL/IT/PT/SV cue; in a column named `dob`/`date_of_birth`… of a CSV/TSV/Markdown table, SQL `INSERT` or column list |
//! | MEDICAL_RECORD_NUMBER | an ID with digits | after MRN/medical record/hospital number/patient ID (and IPP, Pat.-ID, NHC, historia clínica, nr historii choroby, patiëntnummer, cartella clinica, N.º de processo, nr księgi głównej; clinic/unit number, hospital ID); `MRN…` values in a `patient_id`/`mrn` column |
//! | MEDICAL_CONDITION | ICD-10 codes; condition names (English, FR, DE, ES, PL) | clinical words (for a name: in its own paragraph) or each other nearby, an assessment line (`A:`), an ICD column header; not a service name ("Diabetes Clinic") or a questionnaire item answered no |
//! | HL7 v2 fields: UK_NHS, US_SSN, MEDICAL_RECORD_NUMBER, PASSPORT, PERSON, DATE_OF_BIRTH, STREET_ADDRESS | PID, NK1, GT1, IN1 segments (id at a line start, delimiters from MSH): CX identifiers by type code (`NH` or an NHS authority, `SS`, `MR`/`PI`/`PT`/`MRN`, `PPN`; untyped in PID-2/3/4), XPN family/given/middle names (not a middle initial alone), XCN clinicians in PV1-7/8/9/17, PD1-4, ORC-12, OBR-16, AIP-3, TS dates of birth, XAD street lines, PID-19/GT1-12 SSNs | mod-11, SSN rules, a real `YYYYMMDD` date, a street line with a digit and a letter (score 0.85) |
//! | CRYPTO_WALLET | `1…`/`3…`, `bc1…`, `0x` + 40 hex | Base58Check (double SHA-256), bech32/bech32m; for Ethereum an EIP-55 mixed-case checksum (Keccak-256) or wallet words |
//! | AWS/GitHub/Slack/Stripe/Google/OpenAI keys | fixed prefixes | length and alphabet; not a documented example or placeholder |
//! | AWS_SECRET_KEY | 40 base64 characters | after an AWS secret key name or an access key id |
//! | JWT | three base64url segments | header and payload decode to JSON objects, header has `alg` |
//! | PRIVATE_KEY | PEM BEGIN … END block | base64 body (a block without END is reported truncated) |
//! | PASSWORD | `password=`, `"pwd": "…"`, `--password x` (also `"--requirepass", "x"` in an argument list), labels in eight languages (`hasło:`, `contraseña:`, `Passwort:`…), key-value rows (`('smtp_password', '…')`), "the password is X"/"reset it to X", `scheme://user:pass@`, `.netrc`, `mysql -p'…'`/`docker login -p …`, PHP `define('DB_PASSWORD', …)`, Python `auth=(user, "…")` | not a placeholder, type or code expression |
//! | GENERIC_SECRET | values of token/secret/api_key/auth/credential and `signing_key`/`routing_key`/`encryption_key`… names; bearer tokens; PHP `define('…_KEY'/'…_SALT', …)`; SendGrid `SG.…`, Vault `hvs.…`, Stripe `whsec_…` | ≥ 16 characters, entropy ≥ 3.5 bits (3.0 for hex), a digit; not a placeholder |
//! | PERSON | titles (also Madame, Frau, Sr., Pan…), salutations and sign-offs, form fields and role labels (also in other languages), chat speaker labels, name columns and fields (`first_name`/`last_name` in CSV, Markdown and SQL; FHIR `family`/`given`; ISO 20022 `<Cdtr><Nm>` party names without a legal form), `Surname, Given` cells, `SURNAME/GIVEN`, all-capitals name lines, given name + surname lists | see below |
//! | STREET_ADDRESS | number + capitalised words + street suffix (+ town, postcode/ZIP); street name first (`Lindenallee 12`, `Storgatan 14B, 411 38 Göteborg`, `Mannerheimintie 12 A 5`, `Calle Mayor 5`, `ul. Polna 3`), French `8 rue des Lilas`; postcode after "address" | heuristic |
//!
//! # What to expect
//!
//! Validated formats (cards, IBANs, national numbers with check digits, keys with fixed
//! prefixes, PEM blocks, JWTs, Bitcoin addresses) are precise: a random digit string passes Luhn
//! one time in ten and also needs a real card network prefix and length. Context-only kinds
//! (date of birth, passport, MRN, medical condition) are only found next to their keywords, so
//! their recall is limited to text that names what it is. PERSON and STREET_ADDRESS are honest
//! heuristics: titles ("Dr Jane Smith"), salutations and sign-offs, form fields ("Name:"), and
//! capitalised pairs whose first word is a known given name and last word a known surname (US
//! Census 1990 lists plus a hand list of common UK, European, South Asian, Arabic, African and
//! East Asian given names). Expect high precision and modest recall for
//! PERSON: names without a title, field or salutation whose parts are not both on the lists
//! (many non-Anglo names, single-word names, all-lowercase names) are missed, and common words
//! that are also names ("Will", "May") are skipped at the start of a sentence. Addresses
//! without a street type word ("Heol y Nant" aside from its `Heol`) are missed. A named-entity
//! model can be added later as another [`Recognizer`] ([`Detector::with`]).
//!
//! Documented example keys (`AKIAIOSFODNN7EXAMPLE`, values containing "EXAMPLE") and obvious
//! placeholders (`sk_live_xxxx…`, `xoxb-your-token-here`, `<…>`, bodies with too little variety
//! to be random) are not reported, for every secret kind.

mod context;
mod names;
mod normalize;
mod recognizers;
mod scope;
mod table;
mod validate;

use std::cmp::Reverse;
use std::collections::BTreeMap;

use perimeter_types::{EntityKind, Level};
use regex::{Regex, RegexSet, RegexSetBuilder};

pub use normalize::NormalizedText;

/// Findings scoring below this are dropped.
pub const MIN_SCORE: f32 = 0.5;

/// One piece of sensitive data in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: EntityKind,
    /// UTF-8 byte offset into the original input (a character boundary).
    pub start: usize,
    /// Exclusive end offset (a character boundary).
    pub end: usize,
    /// Confidence, 0..=1.
    pub score: f32,
    /// Which validators and context fired, e.g. `["luhn", "iin", "context:card"]`.
    pub evidence: Vec<&'static str>,
}

/// Errors building a [`Detector`]. The built-in patterns are constants, so an error here is a
/// bug in this crate (a unit test builds every pattern); a [`Recognizer`] added with
/// [`Detector::with`] can also bring a bad trigger.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("recogniser {recognizer}: pattern does not compile: {message}")]
    Pattern { recognizer: &'static str, message: String },
}

/// One way of finding sensitive data: a regex with a validator, a keyword with a value, a list
/// lookup, or (later) a named-entity model.
///
/// A recogniser gets the normalised text and appends findings with offsets into
/// [`NormalizedText::as_str`]; the detector applies context, maps offsets back to the original,
/// drops weak findings and resolves overlaps. It must be cheap when nothing matches and must not
/// panic on any input.
///
/// `triggers` are regex patterns (compiled with Unicode off, so `\b`, `\d`, `\s` and `(?i)` are
/// ASCII) that are necessary for the recogniser to find anything. They are all compiled into
/// one prefilter; the recogniser runs only when one of its triggers matched somewhere in the
/// text. An empty list means "always run" — right for a model-based recogniser, which has no
/// cheap necessary condition.
pub trait Recognizer: Send + Sync {
    /// A short stable name, used in error messages.
    fn name(&self) -> &'static str;
    /// The kinds this recogniser can report.
    fn kinds(&self) -> &[EntityKind];
    /// Prefilter patterns; see the trait documentation.
    fn triggers(&self) -> &[&'static str] {
        &[]
    }
    /// More prefilter patterns, each tried on its own (stopping at its first match, and only
    /// while the recogniser is not already awake) instead of in the shared set: for a long
    /// alternation (hundreds of condition names), which would make the set's automaton slower
    /// on every text.
    fn solo_triggers(&self) -> &[&'static str] {
        &[]
    }
    /// Appends findings (offsets into `text.as_str()`) to `out`.
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>);
}

/// The detection engine. Build it once ([`Detector::new`] compiles every pattern and loads the
/// name lists) and share it: it is `Send + Sync` and [`Detector::detect`] takes `&self`.
pub struct Detector {
    recognizers: Vec<Box<dyn Recognizer>>,
    prefilter: RegexSet,
    /// For each prefilter pattern, the index of the recogniser it wakes.
    owner: Vec<usize>,
    /// Triggers with Unicode classes and solo triggers ([`Recognizer::solo_triggers`]), each
    /// with the recogniser it wakes. They are kept out of the set: one of them made the set's
    /// lazy DFA about twice as slow on every text, while on its own it stops at its first match
    /// and runs only when its recogniser is not awake.
    unicode_triggers: Vec<(Regex, usize)>,
    /// Recognisers without triggers.
    always: Vec<usize>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.recognizers.iter().map(|r| r.name()).collect();
        f.debug_struct("Detector").field("recognizers", &names).finish()
    }
}

impl Detector {
    /// Builds the detector with every built-in recogniser.
    pub fn new() -> Result<Self, DetectError> {
        Self::from_recognizers(recognizers::builtin()?)
    }

    /// Adds a recogniser (for example a named-entity model living in a crate that may load
    /// model files) and rebuilds the prefilter.
    pub fn with(self, recognizer: Box<dyn Recognizer>) -> Result<Self, DetectError> {
        let mut all = self.recognizers;
        all.push(recognizer);
        Self::from_recognizers(all)
    }

    fn from_recognizers(recognizers: Vec<Box<dyn Recognizer>>) -> Result<Self, DetectError> {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut always = Vec::new();
        let mut unicode_triggers = Vec::new();
        for (i, r) in recognizers.iter().enumerate() {
            if r.triggers().is_empty() && r.solo_triggers().is_empty() {
                always.push(i);
            }
            for t in r.solo_triggers() {
                unicode_triggers.push((recognizers::compile(r.name(), t)?, i));
            }
            for t in r.triggers() {
                if t.contains("(?u") || t.contains(r"\p{") {
                    unicode_triggers.push((recognizers::compile(r.name(), t)?, i));
                } else {
                    patterns.push(*t);
                    owner.push(i);
                }
            }
        }
        let prefilter = prefilter_set(&recognizers, &patterns, &owner)?;
        Ok(Detector { recognizers, prefilter, owner, unicode_triggers, always })
    }

    /// Finds sensitive data in `text`. Findings are sorted by start and do not overlap; offsets
    /// are byte offsets into `text`.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        if text.is_empty() {
            return Vec::new();
        }
        let norm = NormalizedText::new(text);
        let mut run = vec![false; self.recognizers.len()];
        for i in self.prefilter.matches(norm.as_str()).iter() {
            run[self.owner[i]] = true;
        }
        for (re, i) in &self.unicode_triggers {
            if !run[*i] && re.is_match(norm.as_str()) {
                run[*i] = true;
            }
        }
        for &i in &self.always {
            run[i] = true;
        }
        let mut raw = Vec::with_capacity(32);
        for (r, _) in self.recognizers.iter().zip(&run).filter(|(_, &on)| on) {
            r.find(&norm, &mut raw);
        }
        let ntext = norm.as_str();
        let mut kept = Vec::with_capacity(raw.len());
        for mut f in raw {
            if f.start >= f.end || f.end > ntext.len() {
                continue;
            }
            context::adjust(ntext, &mut f);
            if f.score < MIN_SCORE {
                continue;
            }
            let (start, end) = norm.to_original(f.start, f.end);
            if start < end {
                kept.push(Finding { start, end, ..f });
            }
        }
        resolve_overlaps(kept)
    }

    /// Finds sensitive data in bytes that may not be valid UTF-8: each valid run is scanned on
    /// its own and offsets are into `bytes`. Invalid bytes are never part of a finding.
    pub fn detect_bytes(&self, bytes: &[u8]) -> Vec<Finding> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return self.detect(text);
        }
        let mut out = Vec::new();
        let mut offset = 0;
        for chunk in bytes.utf8_chunks() {
            let valid = chunk.valid();
            out.extend(self.detect(valid).into_iter().map(|f| Finding {
                start: f.start + offset,
                end: f.end + offset,
                ..f
            }));
            offset += valid.len() + chunk.invalid().len();
        }
        out
    }
}

/// One prefilter set (ASCII classes), naming the recogniser whose trigger does not compile.
fn prefilter_set(
    recognizers: &[Box<dyn Recognizer>],
    patterns: &[&'static str],
    owner: &[usize],
) -> Result<RegexSet, DetectError> {
    RegexSetBuilder::new(patterns).unicode(false).size_limit(64 << 20).dfa_size_limit(64 << 20).build().map_err(|e| {
        let culprit =
            patterns.iter().zip(owner).find_map(|(p, &i)| recognizers::compile(recognizers[i].name(), p).err());
        culprit.unwrap_or(DetectError::Pattern { recognizer: "prefilter", message: e.to_string() })
    })
}

/// The highest default level among the findings' kinds; `None` when there are none.
pub fn level_of(findings: &[Finding]) -> Option<Level> {
    findings.iter().map(|f| f.kind.default_level()).max()
}

/// How many findings of each kind.
pub fn kind_counts(findings: &[Finding]) -> BTreeMap<EntityKind, usize> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.kind).or_insert(0) += 1;
    }
    counts
}

/// Tie-break between kinds over the same span and score: a kind with a fixed format or a
/// checksum beats a context or list heuristic.
fn specificity(kind: EntityKind) -> u8 {
    use EntityKind as K;
    match kind {
        K::PrivateKey | K::Jwt | K::AwsAccessKey | K::GithubToken | K::SlackToken | K::StripeKey | K::GoogleApiKey => {
            90
        }
        K::OpenaiApiKey | K::AwsSecretKey => 85,
        K::CreditCard | K::Iban | K::CryptoWallet | K::UkNhs | K::UkNino | K::UsSsn | K::UsItin => 80,
        K::Email | K::IpAddress | K::MacAddress | K::SwiftBic => 70,
        K::Phone => 60,
        K::DateOfBirth | K::MedicalRecordNumber | K::Passport => 50,
        K::Password => 45,
        K::GenericSecret => 40,
        K::MedicalCondition => 30,
        K::StreetAddress => 20,
        K::Person => 10,
    }
}

/// Keeps the best of any overlapping findings (higher score, then longer, then more specific)
/// and returns the survivors sorted by start. O(n log n).
fn resolve_overlaps(findings: Vec<Finding>) -> Vec<Finding> {
    // The order as integer keys, computed once; the index last keeps equal keys in input order,
    // as a stable sort would.
    let mut order: Vec<_> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let key = (Reverse(score_order(f.score)), Reverse(f.end - f.start), Reverse(specificity(f.kind)));
            (key, f.start, f.kind, i)
        })
        .collect();
    order.sort_unstable();
    let mut slots: Vec<Option<Finding>> = findings.into_iter().map(Some).collect();
    // Accepted spans are disjoint, so only the one starting last before `end` can overlap.
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(order.len());
    for (.., i) in order {
        let Some(f) = slots.get_mut(i).and_then(Option::take) else { continue };
        if taken.range(..f.end).next_back().is_some_and(|(_, &end)| end > f.start) {
            continue;
        }
        taken.insert(f.start, f.end);
        out.push(f);
    }
    out.sort_by_key(|f| (f.start, f.end));
    out
}

/// An integer that orders scores as `f32::total_cmp` does.
fn score_order(score: f32) -> i32 {
    let bits = score.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: EntityKind, start: usize, end: usize, score: f32) -> Finding {
        Finding { kind, start, end, score, evidence: Vec::new() }
    }

    #[test]
    fn every_builtin_pattern_compiles() {
        let d = Detector::new().unwrap();
        assert!(d.recognizers.len() > 20);
        let kinds: std::collections::BTreeSet<EntityKind> =
            d.recognizers.iter().flat_map(|r| r.kinds().to_vec()).collect();
        assert_eq!(kinds.len(), EntityKind::ALL.len(), "every kind has a recogniser");
    }

    #[test]
    fn overlaps_resolve_by_score_then_length_then_kind() {
        let out = resolve_overlaps(vec![
            f(EntityKind::Phone, 0, 10, 0.8),
            f(EntityKind::CreditCard, 0, 12, 0.9),
            f(EntityKind::Person, 20, 30, 0.6),
            f(EntityKind::StreetAddress, 18, 30, 0.6),
            f(EntityKind::GenericSecret, 40, 50, 0.75),
            f(EntityKind::Jwt, 40, 50, 0.75),
        ]);
        let kinds: Vec<EntityKind> = out.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [EntityKind::CreditCard, EntityKind::StreetAddress, EntityKind::Jwt]);
    }

    #[test]
    fn levels_and_counts() {
        let v = [f(EntityKind::Email, 0, 1, 1.0), f(EntityKind::Email, 2, 3, 1.0), f(EntityKind::UkNhs, 4, 5, 1.0)];
        assert_eq!(level_of(&v), Some(Level::Restricted));
        assert_eq!(level_of(&[]), None);
        assert_eq!(kind_counts(&v)[&EntityKind::Email], 2);
    }

    /// Scoped searches (runs of digits or capitals, lines with a keyword) find what a search of
    /// the whole text finds: every finding on the labelled corpus and the case files, and on
    /// the same texts changed in ways that move matches around, is the same either way.
    #[test]
    fn scoping_changes_no_finding() {
        let d = Detector::new().unwrap();
        let mut texts: Vec<String> = include_str!("../../../tests/data/detect/corpus.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_string))
            .collect();
        for file in [
            include_str!("../tests/data/address.txt"),
            include_str!("../tests/data/contact.txt"),
            include_str!("../tests/data/finance.txt"),
            include_str!("../tests/data/health.txt"),
            include_str!("../tests/data/hl7.txt"),
            include_str!("../tests/data/mixed.txt"),
            include_str!("../tests/data/national.txt"),
            include_str!("../tests/data/normalization.txt"),
            include_str!("../tests/data/person.txt"),
            include_str!("../tests/data/regressions.txt"),
            include_str!("../tests/data/secrets.txt"),
        ] {
            texts.extend(file.lines().filter_map(|l| l.strip_prefix("> ")).map(str::to_string));
            texts.push(file.to_string());
        }
        let all = texts.join("\n\n");
        let variants: Vec<String> = texts
            .iter()
            .flat_map(|t| {
                let wide: String =
                    t.chars().map(|c| c.to_digit(10).map_or(c, |d| char::from_u32(0xFF10 + d).unwrap_or(c))).collect();
                [t.to_uppercase(), t.to_lowercase(), t.replace(' ', "\u{a0}"), t.replace('\n', " "), wide]
            })
            .collect();
        for t in texts.iter().chain(&variants).chain([&all]) {
            let scoped = d.detect(t);
            scope::tests::UNSCOPED.set(true);
            let plain = d.detect(t);
            scope::tests::UNSCOPED.set(false);
            assert_eq!(scoped, plain, "{t:?}");
        }
    }

    #[test]
    fn detector_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Detector>();
    }
}
