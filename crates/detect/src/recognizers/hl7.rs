//! HL7 v2 messages, the pipe-delimited format of hospital interfaces: patient identifiers,
//! names, dates of birth, street addresses and SSNs read from the fields of PID, NK1, GT1 and
//! IN1 segments, where the field position says what a value is (no keyword needed).
//!
//! Segments are separated by `\r` (the standard), `\n` or `\r\n`; fields by `|`, repetitions
//! by `~`, components by `^` and subcomponents by `&`. An MSH segment's MSH-1 (the character
//! after `MSH`) and MSH-2 (the encoding characters) redefine them for the segments after it.
//! A segment counts only where its id starts the text or a line, is followed by the field
//! separator and has an empty or numeric set ID (field 1), so prose that mentions "PID" and
//! pipe tables with a `PID` column yield nothing. Escape sequences (`\F\`, `\S\` …)
//! never contain a delimiter, so splitting at the delimiters is exact; values that hold them
//! are reported as written.
//!
//! Field positions and data types are those of HL7 v2.5:
//!
//! | field | type | reported as |
//! |---|---|---|
//! | PID-2, PID-3, PID-4 (patient IDs), PID-21 (mother's ID), NK1-33, GT1-2 | CX | by the identifier type code (CX-5), below |
//! | PID-5 (name), PID-6 (mother's maiden name), PID-9 (alias), NK1-2, NK1-30, GT1-3, GT1-4, IN1-16 | XPN | PERSON: family name (surname subcomponent), given name, middle names, each its own span |
//! | PID-7, NK1-16, GT1-8, IN1-18 (date/time of birth) | TS | DATE_OF_BIRTH: the eight date digits of a plausible `YYYYMMDD…` |
//! | PID-11, NK1-4, NK1-32, GT1-5, IN1-19 (address) | XAD | STREET_ADDRESS: the street line (XAD-1.1) when it has a digit and a letter |
//! | PID-19, GT1-12 (SSN) | ST | US_SSN when it passes the area/group/serial rules |
//!
//! A CX identifier (CX-1) is UK_NHS when its type is `NH` or its type or assigning authority
//! (CX-4) names the NHS (or is the NHS number OID), and only when it passes mod-11; US_SSN for
//! type `SS` when it passes the SSN rules; MEDICAL_RECORD_NUMBER for `MR`, `PI`, `PT`, `MRN`
//! (the NHS number instead when an NHS authority assigned it and it passes mod-11); PASSPORT
//! for `PPN`; and MEDICAL_RECORD_NUMBER without a type in the patient ID fields (PID-2/3/4),
//! whose values are patient identifiers by definition. Phone numbers (XTN) are left to the
//! phone recogniser, e-mail addresses to the e-mail recogniser.

use perimeter_types::EntityKind;
use regex::Regex;

use super::{compile, finding, Digits};
use crate::validate::{nhs_ok, us_tin, UsTin};
use crate::{DetectError, Finding, NormalizedText, Recognizer};

/// Every HL7 finding's score: the field says what the value is, and validated kinds still
/// pass their validator.
const SCORE: f32 = 0.85;

/// The NHS number's OID, which an assigning authority may give as its universal ID.
const NHS_OID: &str = "2.16.840.1.113883.2.1.4.1";

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    all.push(Box::new(Hl7 { segment: compile("hl7", r"(?:^|[\r\n])(?:MSH|PID|NK1|GT1|IN1|PV1|PD1|ORC|OBR|AIP)")? }));
    Ok(())
}

struct Hl7 {
    /// A segment id of interest at the start of the text or of a line.
    segment: Regex,
}

/// What a field holds, by its HL7 data type.
#[derive(Clone, Copy)]
enum Field {
    /// CX identifiers; `patient` when an identifier without a type code is a patient ID.
    Ids { patient: bool },
    /// XPN person names.
    Name,
    /// XCN: a clinician (ID, family name, given name, middle name): the names are reported.
    Staff,
    /// TS date/time of birth.
    Birth,
    /// XAD addresses.
    Address,
    /// An SSN written as a string (ST).
    Ssn,
}

/// The fields read from each segment: number, type and the evidence naming it.
#[rustfmt::skip]
const PID: &[(usize, Field, &str)] = &[
    (2, Field::Ids { patient: true }, "hl7-pid-2"),
    (3, Field::Ids { patient: true }, "hl7-pid-3"),
    (4, Field::Ids { patient: true }, "hl7-pid-4"),
    (5, Field::Name, "hl7-pid-5"),
    (6, Field::Name, "hl7-pid-6"),
    (7, Field::Birth, "hl7-pid-7"),
    (9, Field::Name, "hl7-pid-9"),
    (11, Field::Address, "hl7-pid-11"),
    (19, Field::Ssn, "hl7-pid-19"),
    (21, Field::Ids { patient: false }, "hl7-pid-21"),
];
#[rustfmt::skip]
const NK1: &[(usize, Field, &str)] = &[
    (2, Field::Name, "hl7-nk1-2"),
    (4, Field::Address, "hl7-nk1-4"),
    (16, Field::Birth, "hl7-nk1-16"),
    (30, Field::Name, "hl7-nk1-30"),
    (32, Field::Address, "hl7-nk1-32"),
    (33, Field::Ids { patient: false }, "hl7-nk1-33"),
];
#[rustfmt::skip]
const GT1: &[(usize, Field, &str)] = &[
    (2, Field::Ids { patient: false }, "hl7-gt1-2"),
    (3, Field::Name, "hl7-gt1-3"),
    (4, Field::Name, "hl7-gt1-4"),
    (5, Field::Address, "hl7-gt1-5"),
    (8, Field::Birth, "hl7-gt1-8"),
    (12, Field::Ssn, "hl7-gt1-12"),
];
#[rustfmt::skip]
const IN1: &[(usize, Field, &str)] = &[
    (16, Field::Name, "hl7-in1-16"),
    (18, Field::Birth, "hl7-in1-18"),
    (19, Field::Address, "hl7-in1-19"),
];

// Clinicians (XCN): attending, referring, consulting and admitting doctors (PV1-7/8/9/17),
// the primary care provider (PD1-4), ordering providers (ORC-12, OBR-16), result
// interpreters and technicians (OBR-32/34, first component) and appointment staff (AIP-3).
#[rustfmt::skip]
const PV1: &[(usize, Field, &str)] = &[
    (7, Field::Staff, "hl7-pv1-7"),
    (8, Field::Staff, "hl7-pv1-8"),
    (9, Field::Staff, "hl7-pv1-9"),
    (17, Field::Staff, "hl7-pv1-17"),
];
#[rustfmt::skip]
const PD1: &[(usize, Field, &str)] = &[(4, Field::Staff, "hl7-pd1-4")];
#[rustfmt::skip]
const ORC: &[(usize, Field, &str)] = &[(12, Field::Staff, "hl7-orc-12")];
#[rustfmt::skip]
const OBR: &[(usize, Field, &str)] = &[(16, Field::Staff, "hl7-obr-16")];
#[rustfmt::skip]
const AIP: &[(usize, Field, &str)] = &[(3, Field::Staff, "hl7-aip-3")];

/// Identifier type codes (HL7 table 0203) that say what a CX value is, with their evidence.
const TYPES: &[(&str, EntityKind, &str)] = &[
    ("NH", EntityKind::UkNhs, "type:NH"),
    ("MR", EntityKind::MedicalRecordNumber, "type:MR"),
    ("MRN", EntityKind::MedicalRecordNumber, "type:MRN"),
    ("PI", EntityKind::MedicalRecordNumber, "type:PI"),
    ("PT", EntityKind::MedicalRecordNumber, "type:PT"),
    ("SS", EntityKind::UsSsn, "type:SS"),
    ("PPN", EntityKind::Passport, "type:PPN"),
];

/// The delimiters in force: field, component, repetition, subcomponent. A delimiter that
/// MSH-2 leaves out is set to the field separator, which never occurs inside a field, so
/// splitting at it is a no-op.
#[derive(Clone, Copy)]
struct Delimiters {
    field: u8,
    component: u8,
    repetition: u8,
    subcomponent: u8,
}

const DEFAULT: Delimiters = Delimiters { field: b'|', component: b'^', repetition: b'~', subcomponent: b'&' };

impl Delimiters {
    /// The delimiters an MSH segment (`line` starts with `MSH`) declares: MSH-1, then MSH-2's
    /// component, repetition, escape and subcomponent characters (and v2.7's truncation
    /// character). `None` when they are not distinct punctuation, so `MSH: …` in prose
    /// changes nothing.
    fn of_msh(line: &[u8]) -> Option<Delimiters> {
        let field = *line.get(3)?;
        let rest = line.get(4..)?;
        let encoding = &rest[..rest.iter().position(|&b| b == field).unwrap_or(rest.len())];
        let all = || std::iter::once(&field).chain(encoding);
        let distinct = all().enumerate().all(|(i, b)| !all().take(i).any(|c| c == b));
        if !(2..=5).contains(&encoding.len()) || !all().all(u8::is_ascii_punctuation) || !distinct {
            return None;
        }
        let at = |i: usize| encoding.get(i).copied().unwrap_or(field);
        Some(Delimiters { field, component: at(0), repetition: at(1), subcomponent: at(3) })
    }
}

impl Recognizer for Hl7 {
    fn name(&self) -> &'static str {
        "hl7"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[
            EntityKind::UkNhs,
            EntityKind::UsSsn,
            EntityKind::MedicalRecordNumber,
            EntityKind::Passport,
            EntityKind::Person,
            EntityKind::DateOfBirth,
            EntityKind::StreetAddress,
        ]
    }
    fn triggers(&self) -> &[&'static str] {
        // A segment of interest with the default field separator, or an MSH segment that may
        // declare another one.
        &[r"(?:^|[\r\n])(?:PID|NK1|GT1|IN1)\|", r"(?:^|[\r\n])MSH[!-/:-@\[-`{-~]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        let mut delimiters = DEFAULT;
        for m in self.segment.find_iter(t) {
            let start = m.end() - 3;
            let end =
                t.as_bytes()[start..].iter().position(|&b| b == b'\r' || b == b'\n').map_or(t.len(), |n| start + n);
            let line = &t[start..end];
            let fields = match &line.as_bytes()[..3] {
                b"MSH" => {
                    delimiters = Delimiters::of_msh(line.as_bytes()).unwrap_or(DEFAULT);
                    continue;
                }
                b"PID" => PID,
                b"NK1" => NK1,
                b"GT1" => GT1,
                b"PV1" => PV1,
                b"PD1" => PD1,
                b"ORC" => ORC,
                b"OBR" => OBR,
                b"AIP" => AIP,
                _ => IN1,
            };
            if line.as_bytes().get(3) != Some(&delimiters.field) {
                continue;
            }
            // Field 1 is a set ID (a number, optional in PID; ORC-1 is an order control code
            // such as `NW`, PD1-1 a coded value): a pipe table that starts with a `PID` column
            // (`PID|USER|COMMAND`) is not a segment.
            let first = line[4..].split(char::from(delimiters.field)).next().unwrap_or("");
            let plausible = match &line.as_bytes()[..3] {
                b"ORC" => first.len() <= 2 && first.bytes().all(|b| b.is_ascii_uppercase()),
                b"PD1" => first.len() <= 4 && first.bytes().all(|b| b.is_ascii_alphanumeric()),
                _ => first.len() <= 4 && first.bytes().all(|b| b.is_ascii_digit()),
            };
            if !plausible {
                continue;
            }
            let last = fields.last().map_or(0, |f| f.0);
            // Field n is the n-th piece after the segment id.
            for (n, (at, value)) in pieces(&line[4..], start + 4, delimiters.field).enumerate().take(last) {
                if let Some(&(_, field, label)) = fields.iter().find(|f| f.0 == n + 1) {
                    read_field(field, label, at, value, &delimiters, out);
                }
            }
        }
    }
}

/// The pieces of `s` (which starts at offset `at` of the text) between `sep`s, with their
/// offsets. `sep` is ASCII, so every piece starts and ends on a character boundary.
fn pieces(s: &str, at: usize, sep: u8) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = at;
    s.split(char::from(sep)).map(move |p| {
        let piece = (offset, p);
        offset += p.len() + 1;
        piece
    })
}

/// The `n`-th (1-based) piece of `s` between `sep`s, with its offset.
fn nth(s: &str, at: usize, sep: u8, n: usize) -> Option<(usize, &str)> {
    pieces(s, at, sep).nth(n - 1)
}

/// `s` without surrounding spaces and tabs, with its offset; `None` when nothing is left.
fn trimmed(at: usize, s: &str) -> Option<(usize, &str)> {
    let v = s.trim_start_matches([' ', '\t']);
    let at = at + (s.len() - v.len());
    let v = v.trim_end_matches([' ', '\t']);
    (!v.is_empty()).then_some((at, v))
}

fn read_field(field: Field, label: &'static str, at: usize, value: &str, d: &Delimiters, out: &mut Vec<Finding>) {
    for (at, rep) in pieces(value, at, d.repetition) {
        match field {
            Field::Ids { patient } => identifier(patient, label, at, rep, d, out),
            // XPN: family name (its surname subcomponent), given name, middle names. XCN: the
            // same after an ID number.
            Field::Name => names(rep, at, d, 1, label, out),
            Field::Staff => names(rep, at, d, 2, label, out),
            Field::Birth => {
                let Some((at, time)) = nth(rep, at, d.component, 1).and_then(|(at, p)| trimmed(at, p)) else {
                    continue;
                };
                if birth_date(time) {
                    out.push(finding(EntityKind::DateOfBirth, at, at + 8, SCORE, &[label, "plausible-date"]));
                }
            }
            Field::Address => {
                let street = nth(rep, at, d.component, 1).and_then(|(at, p)| nth(p, at, d.subcomponent, 1));
                let Some((at, street)) = street.and_then(|(at, p)| trimmed(at, p)) else { continue };
                let b = street.as_bytes();
                if b.iter().any(u8::is_ascii_digit) && street.chars().any(char::is_alphabetic) && street.len() <= 120 {
                    out.push(finding(EntityKind::StreetAddress, at, at + street.len(), SCORE, &[label, "street"]));
                }
            }
            Field::Ssn => {
                let Some((at, v)) = nth(rep, at, d.component, 1).and_then(|(at, p)| trimmed(at, p)) else { continue };
                if ssn(v) {
                    out.push(finding(EntityKind::UsSsn, at, at + v.len(), SCORE, &[label, "range-rules"]));
                }
            }
        }
    }
}

/// One CX identifier: its ID (CX-1) reported by its type code (CX-5) and assigning authority
/// (CX-4, whose namespace and universal ID are subcomponents).
fn identifier(patient: bool, label: &'static str, at: usize, cx: &str, d: &Delimiters, out: &mut Vec<Finding>) {
    let Some((id_at, id)) = nth(cx, at, d.component, 1).and_then(|(at, p)| trimmed(at, p)) else { return };
    let component = |n| nth(cx, at, d.component, n).map_or("", |(_, p)| p.trim_matches([' ', '\t']));
    let (authority, type_code) = (component(4), component(5));
    // The authority names the NHS as a word (`NHS`, `NHS England`; not a trust code that
    // happens to hold the letters) or by the NHS number's OID.
    let nhs_authority = authority.split(char::from(d.subcomponent)).any(|s| {
        s.trim_matches([' ', '\t']) == NHS_OID
            || s.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w.eq_ignore_ascii_case("NHS"))
    });
    let typed = TYPES.iter().find(|(code, ..)| type_code.eq_ignore_ascii_case(code));
    let (kind, evidence) = match typed {
        Some(&(_, kind, evidence)) => (kind, evidence),
        _ if type_code.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"NHS")) => (EntityKind::UkNhs, "type:NHS"),
        _ if nhs_authority => (EntityKind::UkNhs, "authority:NHS"),
        None if type_code.is_empty() && patient => (EntityKind::MedicalRecordNumber, "untyped"),
        _ => return,
    };
    // A record number the NHS assigned is the NHS number when it passes mod-11, and stays a
    // record number otherwise.
    let (kind, evidence) = if nhs_authority && kind == EntityKind::MedicalRecordNumber && nhs_number(id) {
        (EntityKind::UkNhs, "authority:NHS")
    } else {
        (kind, evidence)
    };
    let (ok, check): (bool, &[&'static str]) = match kind {
        EntityKind::UkNhs => (nhs_number(id), &["mod11"]),
        EntityKind::UsSsn => (ssn(id), &["range-rules"]),
        EntityKind::Passport => (passport(id), &[]),
        _ => (record_number(id), &[]),
    };
    if ok {
        let mut f = finding(kind, id_at, id_at + id.len(), SCORE, &[label, evidence]);
        f.evidence.extend_from_slice(check);
        out.push(f);
    }
}

/// A name part: a letter, no digit, not HL7's null (`""`), not absurdly long.
/// The family, given and middle names of an XPN (`family` = 1) or XCN (`family` = 2) value,
/// each its own PERSON span; a middle initial alone ("A", "J.") names nobody.
fn names(rep: &str, at: usize, d: &Delimiters, family: usize, label: &'static str, out: &mut Vec<Finding>) {
    let parts = [(family, "family-name"), (family + 1, "given-name"), (family + 2, "middle-name")];
    for (n, what) in parts {
        let Some((at, part)) = nth(rep, at, d.component, n) else { break };
        let part = if n == family { nth(part, at, d.subcomponent, 1) } else { Some((at, part)) };
        let Some((at, name)) = part.and_then(|(at, p)| trimmed(at, p)) else { continue };
        let initial = what == "middle-name" && name.trim_end_matches('.').chars().count() == 1;
        if person_name(name) && !initial {
            out.push(finding(EntityKind::Person, at, at + name.len(), SCORE, &[label, what]));
        }
    }
}

fn person_name(s: &str) -> bool {
    s.len() <= 60 && s.chars().any(char::is_alphabetic) && !s.bytes().any(|b| b.is_ascii_digit())
}

/// A DTM that starts with a plausible date: `YYYYMMDD`, then optionally time digits, a
/// fraction and a `+`/`-` time zone. Year 1900–2100, a real day of the month.
fn birth_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || b.len() > 24 || !b[..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !b[8..].iter().all(|&c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2100).contains(&year) && (1..=days).contains(&day)
}

/// Nine digits, bare or 3-2-4 with dashes or spaces, that pass the SSN rules.
fn ssn(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shaped = match b.len() {
        9 => digits(0..9),
        11 => matches!(b[3], b'-' | b' ') && b[6] == b[3] && digits(0..3) && digits(4..6) && digits(7..11),
        _ => false,
    };
    shaped && Digits::of(s).is_some_and(|d| us_tin(d.as_slice()) == Some(UsTin::Ssn))
}

/// Ten digits, bare or 3-3-4 with spaces or dashes, that pass mod-11.
fn nhs_number(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shaped = match b.len() {
        10 => digits(0..10),
        12 => matches!(b[3], b' ' | b'-') && b[7] == b[3] && digits(0..3) && digits(4..7) && digits(8..12),
        _ => false,
    };
    shaped && Digits::of(s).is_some_and(|d| nhs_ok(d.as_slice()))
}

/// A record number: up to 30 letters, digits and `-./_`, with a digit.
fn record_number(s: &str) -> bool {
    s.len() <= 30
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'/' | b'_'))
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// A passport number: 6 to 12 letters and digits, with a digit.
fn passport(s: &str) -> bool {
    (6..=12).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) && s.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Vec<(EntityKind, String, Vec<&'static str>)> {
        let d = Hl7 { segment: compile("hl7", r"(?:^|[\r\n])(?:MSH|PID|NK1|GT1|IN1)").unwrap() };
        let norm = NormalizedText::new(text);
        let mut out = Vec::new();
        d.find(&norm, &mut out);
        let t = norm.as_str();
        out.into_iter().map(|f| (f.kind, t[f.start..f.end].to_string(), f.evidence)).collect()
    }

    #[test]
    fn delimiters_come_from_msh() {
        let d = Delimiters::of_msh(b"MSH#*$\\@#APP").unwrap();
        assert_eq!((d.field, d.component, d.repetition, d.subcomponent), (b'#', b'*', b'$', b'@'));
        // Missing encoding characters split nothing.
        let d = Delimiters::of_msh(b"MSH|^~|APP").unwrap();
        assert_eq!(d.subcomponent, b'|');
        for bad in [&b"MSH: the header"[..], b"MSH|^^\\&|", b"MSH|", b"MSH", b"MSH|^~\\&abc|"] {
            assert!(Delimiters::of_msh(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn evidence_names_the_field_and_type() {
        let got = find("PID|1||MRN00417^^^RXH^MR~613 186 0912^^^NHS^NH||O'NEIL^SIOBHAN");
        assert_eq!(got[0], (EntityKind::MedicalRecordNumber, "MRN00417".into(), vec!["hl7-pid-3", "type:MR"]));
        assert_eq!(got[1], (EntityKind::UkNhs, "613 186 0912".into(), vec!["hl7-pid-3", "type:NH", "mod11"]));
        assert_eq!(got[2], (EntityKind::Person, "O'NEIL".into(), vec!["hl7-pid-5", "family-name"]));
        assert_eq!(got[3], (EntityKind::Person, "SIOBHAN".into(), vec!["hl7-pid-5", "given-name"]));
    }

    #[test]
    fn dates_of_birth() {
        for ok in ["19840229", "198402291230", "19840229123015.25+0100", "20000229"] {
            assert!(birth_date(ok), "{ok}");
        }
        for bad in ["19830229", "19001301", "1984021", "18991231", "19840230", "19840229T1230", "1984-02-29"] {
            assert!(!birth_date(bad), "{bad}");
        }
    }

    /// In the whole detector an HL7 finding wins a tie with the same span found by another
    /// recogniser (it is registered first), so the evidence names the field.
    #[test]
    fn the_detector_keeps_the_field_evidence() {
        let d = crate::Detector::new().unwrap();
        let text = "PID|1||RXH0042^^^RXH^MR||||||||||||||||512-38-4406";
        let f = d.detect(text);
        let ssn = f.iter().find(|f| f.kind == EntityKind::UsSsn).unwrap();
        assert_eq!((&text[ssn.start..ssn.end], ssn.score), ("512-38-4406", SCORE));
        assert_eq!(ssn.evidence, ["hl7-pid-19", "range-rules"]);
    }

    /// Every prefix of a message (truncated segments, fields and components) gives findings
    /// inside the text, without panicking.
    #[test]
    fn truncated_messages_do_not_panic() {
        let msg = "MSH|^~\\&|APP|FAC|||20240101||ADT^A01|1|P|2.5\rPID|1|X1^^^H^PI|4526018155^^^NHS^NH~\
                   123-45-6789^^^SSA^SS||Kowalczyk&van&Kowal^Zofia^M\\T\\N||19700101|F||||\
                   12 Old Road^^Leeds||||||||123456789\rNK1|1|Doe^Jan|SPO|4 Mill Lane\rGT1|1||Ng^Wei||\
                   ||||||||287651093\rIN1|1|||||||||||||||Ng^Wei||19800101|5 Elm Way";
        for end in 0..=msg.len() {
            for sep in ["\r", "\n", "\r\n"] {
                let text = msg[..end].replace('\r', sep);
                for (_, covered, _) in find(&text) {
                    assert!(!covered.is_empty());
                }
            }
        }
        let kinds: Vec<EntityKind> = find(msg).into_iter().map(|f| f.0).collect();
        assert!(kinds.contains(&EntityKind::UkNhs) && kinds.contains(&EntityKind::UsSsn), "{kinds:?}");
    }
}
