//! National identifiers: US_SSN and US_ITIN (range rules), UK_NINO (prefix rules), UK_NHS
//! (mod-11) and PASSPORT (context only).

use perimeter_types::EntityKind;
use regex::Regex;

use super::{byte_at, compile, continues_token, finding, Digits};
use crate::context::{after, before, find_word, WINDOW};
use crate::scope::find_in_runs;
use crate::validate::{nhs_ok, nino_prefix_ok, us_tin, UsTin};
use crate::{DetectError, Finding, NormalizedText, Recognizer};

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    all.push(Box::new(UsTaxId { re: compile("us-tin", r"\b[0-9]{3}[ \-][0-9]{2}[ \-][0-9]{4}\b|\b[0-9]{9}\b")? }));
    all.push(Box::new(UkNino {
        re: compile("uk-nino", r"\b[A-Z]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[A-D]\b")?,
    }));
    all.push(Box::new(UkNhs {
        re: compile("uk-nhs", r"\b[0-9]{3}[ \-]?[0-9]{3}[ \-]?[0-9]{4}\b")?,
        // A column header naming the NHS number: `nhs_number`, `NHS No`, `nhsNumber`, `NHS #`.
        column: compile("uk-nhs", r"(?i)\bnhs(?:[ _\-.]?(?:number|num|nbr|no\.?|nr|#|id)|number)?(?:\b|[#.])")?,
    }));
    all.push(Box::new(Passport {
        keyword: compile(
            "passport",
            r"(?i)\b(?:passport|reisepass(?:nummer|-?nr\.?)?|passnummer|pasaporte|passeport|passaporto|passaporte|paszport[a-z]*|paspoort(?:nummer)?)(?:\b|\.)",
        )?,
        numbered: compile("passport", r"(?i:n(?:ú|u)mero|number|nummer|no\.|nr\.?|n°|nº)[ \t]*:?[ \t]*([A-Z0-9]{6,9})\b")?,
        token: compile("passport", r"\b[A-Z0-9]{6,9}\b")?,
    }));
    Ok(())
}

/// The separators between digit groups are all the same (none, all spaces or all dashes).
fn consistent_separators(s: &str) -> Option<u8> {
    let mut seps = s.bytes().filter(|b| !b.is_ascii_digit());
    let first = seps.next();
    seps.all(|b| Some(b) == first).then_some(first.unwrap_or(0))
}

struct UsTaxId {
    re: Regex,
}

const SSN_WORDS: &[&str] = &["ssn", "social security", "ss#", "ss no"];
const ITIN_WORDS: &[&str] = &["itin", "taxpayer", "tax id", "tin"];

impl Recognizer for UsTaxId {
    fn name(&self) -> &'static str {
        "us-tin"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::UsSsn, EntityKind::UsItin]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b[0-9]{3}[ \-][0-9]{2}[ \-][0-9]{4}\b", r"(?i)\b(?:ssn|social security|itin|taxpayer|tax id|tin)\b"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_runs(&self.re, t, &text.runs().numeric, 9, |r| r.chain >= 9) {
            let Some(sep) = consistent_separators(m.as_str()) else { continue };
            if continues_token(t, m.start(), m.end()) {
                continue;
            }
            let Some(d) = Digits::of(m.as_str()) else { continue };
            let Some(tin) = us_tin(d.as_slice()) else { continue };
            let (kind, words, tag) = match tin {
                UsTin::Ssn => (EntityKind::UsSsn, SSN_WORDS, "context:ssn"),
                UsTin::Itin => (EntityKind::UsItin, ITIN_WORDS, "context:itin"),
            };
            let named = || find_word(before(t, m.start(), WINDOW), words).is_some();
            let (score, evidence): (f32, &[&'static str]) = match sep {
                b'-' => (0.85, &["range-rules"]),
                // SSNs are also printed with spaces; an ITIN needs dashes or its name.
                b' ' if tin == UsTin::Ssn || named() => (0.75, &["range-rules"]),
                // Nine bare digits are anything; only with the name of the number before them.
                b'\0' if named() => (0.8, &["range-rules", tag]),
                _ => continue,
            };
            out.push(finding(kind, m.start(), m.end(), score, evidence));
        }
    }
}

struct UkNino {
    re: Regex,
}

impl Recognizer for UkNino {
    fn name(&self) -> &'static str {
        "uk-nino"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::UkNino]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b[A-Z]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[A-D]\b"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_runs(&self.re, t, &text.runs().upper, 9, |r| r.capital_digit && r.upper >= 3 && r.digits >= 6)
        {
            let b = m.as_str().as_bytes();
            if nino_prefix_ok(b[0], b[1]) && !continues_token(t, m.start(), m.end()) {
                out.push(finding(EntityKind::UkNino, m.start(), m.end(), 0.85, &["nino-prefix"]));
            }
        }
    }
}

struct UkNhs {
    re: Regex,
    column: Regex,
}

impl Recognizer for UkNhs {
    fn name(&self) -> &'static str {
        "uk-nhs"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::UkNhs]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b[0-9]{3}[ \-]?[0-9]{3}[ \-]?[0-9]{4}\b"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_runs(&self.re, t, &text.runs().numeric, 10, |r| r.chain >= 10) {
            let Some(sep) = consistent_separators(m.as_str()) else { continue };
            let Some(d) = Digits::of(m.as_str()) else { continue };
            if !nhs_ok(d.as_slice()) || continues_token(t, m.start(), m.end()) {
                continue;
            }
            // NHS numbers are printed 3-3-4 with spaces; dashes are also how US phone numbers
            // look, and ten bare digits are anything without "NHS" before them. After "NHS" a
            // dashed or bare number is one, and outranks the phone number it also is.
            let labelled = find_word(before(t, m.start(), WINDOW), &["nhs"]).is_some();
            let (score, evidence): (f32, &[&'static str]) = match sep {
                b' ' => (0.8, &["mod11"]),
                _ if labelled => (0.8, &["mod11", "context:nhs"]),
                b'-' => (0.6, &["mod11"]),
                _ => continue,
            };
            out.push(finding(EntityKind::UkNhs, m.start(), m.end(), score, evidence));
        }
        // Ten digits (bare, spaced or dashed) that pass mod-11 in a column named for the NHS
        // number, in a CSV/TSV/Markdown table, SQL `INSERT` or column list.
        for c in self.column.find_iter(t) {
            let Some(start) = super::health::column_start(t, c.start()) else { continue };
            for (s, e) in crate::table::column_cells(t, start, c.end()) {
                let cell = &t[s..e];
                let shaped = self.re.find(cell).is_some_and(|m| m.range() == (0..cell.len()));
                let ok = shaped
                    && consistent_separators(cell).is_some()
                    && Digits::of(cell).is_some_and(|d| nhs_ok(d.as_slice()));
                if ok {
                    out.push(finding(EntityKind::UkNhs, s, e, 0.85, &["mod11", "context:nhs-column"]));
                }
            }
        }
    }
}

struct Passport {
    /// A number label that may come lines after the passport word.
    numbered: Regex,
    keyword: Regex,
    token: Regex,
}

impl Recognizer for Passport {
    fn name(&self) -> &'static str {
        "passport"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Passport]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r"(?i)\bpassport\b",
            r"(?i)\b(?:reisepass|passnummer|pasaporte|passeport|passaporto|passaporte|paszport|paspoort)",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for k in self.keyword.find_iter(t) {
            // The first token of 6-9 capitals/digits with a digit in it, soon after "passport".
            let window = after(t, k.end(), 48);
            let whole = |end: usize| byte_at(t, k.end() + end).is_none_or(|b| !b.is_ascii_alphanumeric());
            let hit =
                self.token.find_iter(window).find(|m| m.as_str().bytes().any(|b| b.is_ascii_digit()) && whole(m.end()));
            if let Some(m) = hit {
                let (start, end) = (k.end() + m.start(), k.end() + m.end());
                out.push(finding(EntityKind::Passport, start, end, 0.7, &["context:passport"]));
                continue;
            }
            // "Pasaporte\n…\nNúmero: X12345678": a number label a few lines on.
            let far = after(t, k.end(), 160);
            let hit = self.numbered.captures(far).and_then(|c| c.get(1)).filter(|m| {
                m.as_str().bytes().any(|b| b.is_ascii_digit()) && m.as_str().bytes().any(|b| b.is_ascii_uppercase())
            });
            if let Some(m) = hit {
                let (start, end) = (k.end() + m.start(), k.end() + m.end());
                out.push(finding(EntityKind::Passport, start, end, 0.65, &["context:passport"]));
            }
            // A column headed "Passport" in a CSV/TSV/Markdown table or SQL `INSERT`: each cell
            // shaped like a passport number.
            for (s, e) in crate::table::column_cells(t, k.start(), k.end()) {
                let cell = &t[s..e];
                let shaped = self.token.find(cell).is_some_and(|m| m.range() == (0..cell.len()))
                    && cell.bytes().filter(u8::is_ascii_digit).count() >= 5;
                if shaped {
                    out.push(finding(EntityKind::Passport, s, e, 0.7, &["context:passport-column"]));
                }
            }
        }
    }
}
