//! STREET_ADDRESS, an honest heuristic: a house number, one to four capitalised words and a
//! street suffix ("221B Baker Street"), optionally followed by a flat, a town and a UK postcode
//! or US state and ZIP; or a UK postcode on its own after "address"/"lives at".
//!
//! Continental formats ("Hauptstraße 5") and addresses without a suffix word are not found.

use perimeter_types::EntityKind;
use regex::Regex;

use super::{compile, finding};
use crate::context::{after, before, find_word, WINDOW};
use crate::scope::{find_in_cued_lines, find_in_runs};
use crate::{DetectError, Finding, NormalizedText, Recognizer};

/// Street suffixes written out, and abbreviated (which may take a full stop).
const SUFFIX: &str = r"(?:Street|Road|Avenue|Lane|Drive|Close|Court|Way|Place|Crescent|Terrace|Boulevard|Row|Gardens|Grove|Hill|Square|Walk|Mews|Parade|View|Rise|Vale|Wharf|Quay|Heights|Circus|Parkway|Highway|Park|Green)";
const SUFFIX_ABBR: &str = r"(?:St|Rd|Ave|Ln|Dr|Ct|Pl|Cres|Blvd|Sq|Pkwy|Hwy)";
const UK_POSTCODE: &str = r"(?:[A-Z]{1,2}[0-9][A-Z0-9]?[ \t]?[0-9][ABD-HJLNP-UW-Z]{2}|GIR[ \t]?0AA)";
const US_STATE_ZIP: &str = r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)[ \t]+[0-9]{5}(?:-[0-9]{4})?";

/// The street pattern's necessary part, for the prefilter.
const STREET_TRIGGER: &str = r"[0-9][A-Za-z]?,?[ \t]+(?:[A-Z][a-z'.]*[ \t]+){1,4}(?:Street|Road|Avenue|Lane|Drive|Close|Court|Way|Place|Crescent|Terrace|Boulevard|Row|Gardens|Grove|Hill|Square|Walk|Mews|Parade|View|Rise|Vale|Wharf|Quay|Heights|Circus|Parkway|Highway|Park|Green|St|Rd|Ave|Ln|Dr|Ct|Pl|Cres|Blvd|Sq|Pkwy|Hwy)\b";

/// A house number, one to four capitalised words and a suffix (the last suffix word, so
/// "Beacon Hill Road" is one street), plus an optional compass direction.
fn street_pattern() -> String {
    format!(
        r"\b[0-9]{{1,5}}[A-Za-z]?(?:[\-/][0-9]{{1,5}}[A-Za-z]?)?,?[ \t]+(?:(?:[A-Z][a-z']+|[A-Z]\.?)[ \t]+){{1,4}}(?:{SUFFIX}\b|{SUFFIX_ABBR}\b\.?)(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    )
}

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    all.push(Box::new(StreetAddress {
        // Every street ends with one of its suffix words.
        cue: compile("street-address", &format!(r"(?:{SUFFIX}|{SUFFIX_ABBR})\b"))?,
        street: compile("street-address", &street_pattern())?,
        tail: compile(
            "street-address",
            &format!(
                r"^(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Flat)\.?[ \t]*#?[0-9A-Za-z]+)?(?:,[ \t]*[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){{0,2}})?(?:,?[ \t]+(?:{UK_POSTCODE}|{US_STATE_ZIP})\b)?"
            ),
        )?,
        postcode_in_tail: compile("street-address", &format!(r"(?:{UK_POSTCODE}|{US_STATE_ZIP})$"))?,
    }));
    all.push(Box::new(Postcode { re: compile("postcode", &format!(r"\b{UK_POSTCODE}\b"))? }));
    Ok(())
}

struct StreetAddress {
    cue: Regex,
    street: Regex,
    tail: Regex,
    postcode_in_tail: Regex,
}

impl Recognizer for StreetAddress {
    fn name(&self) -> &'static str {
        "street-address"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::StreetAddress]
    }
    fn triggers(&self) -> &[&'static str] {
        &[STREET_TRIGGER]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_cued_lines(&self.street, &self.cue, t) {
            let rest = after(t, m.end(), 96);
            let tail = self.tail.find(rest).map_or("", |x| x.as_str());
            let tail = tail.trim_end_matches([',', ' ', '\t']);
            let end = m.end() + tail.len();
            if self.postcode_in_tail.is_match(tail) {
                out.push(finding(EntityKind::StreetAddress, m.start(), end, 0.85, &["street-suffix", "postcode"]));
            } else {
                out.push(finding(EntityKind::StreetAddress, m.start(), end, 0.75, &["street-suffix"]));
            }
        }
    }
}

/// Words before a lone postcode that make it an address.
/// ("postcode is …" alone names an area, not an address.)
const ADDRESS_WORDS: &[&str] = &["address", "lives at", "living at", "resides at", "residing at", "moved to"];

/// A UK postcode on its own, after an address word.
struct Postcode {
    re: Regex,
}

impl Recognizer for Postcode {
    fn name(&self) -> &'static str {
        "postcode"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::StreetAddress]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b[A-Z]{1,2}[0-9][A-Z0-9]?[ \t]?[0-9][ABD-HJLNP-UW-Z]{2}\b"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_runs(&self.re, t, &text.runs().upper, 5, |r| r.capital_digit && r.upper >= 3) {
            if find_word(before(t, m.start(), WINDOW), ADDRESS_WORDS).is_some() {
                out.push(finding(EntityKind::StreetAddress, m.start(), m.end(), 0.7, &["postcode", "context:address"]));
            }
        }
    }
}
