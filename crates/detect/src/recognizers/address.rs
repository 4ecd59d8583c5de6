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
const STREET_TRIGGER: &str = r"[0-9][A-Za-z]?,?[ \t]+(?:(?:N|S|E|W|NE|NW|SE|SW)\.?[ \t]+)?(?:[A-Z][a-z'.]*[ \t]+){1,4}(?:Street|Road|Avenue|Lane|Drive|Close|Court|Way|Place|Crescent|Terrace|Boulevard|Row|Gardens|Grove|Hill|Square|Walk|Mews|Parade|View|Rise|Vale|Wharf|Quay|Heights|Circus|Parkway|Highway|Park|Green|St|Rd|Ave|Ln|Dr|Ct|Pl|Cres|Blvd|Sq|Pkwy|Hwy)\b";

/// A house number, one to four capitalised words and a suffix (the last suffix word, so
/// "Beacon Hill Road" is one street), plus an optional compass direction.
fn street_pattern() -> String {
    format!(
        r"\b[0-9]{{1,5}}[A-Za-z]?(?:[\-/][0-9]{{1,5}}[A-Za-z]?)?,?[ \t]+(?:(?:N|S|E|W|NE|NW|SE|SW)\.?[ \t]+)?(?:(?:(?:[A-Z][a-z']+|[A-Z]\.?)[ \t]+){{1,4}}(?:{SUFFIX}\b|{SUFFIX_ABBR}\b\.?)|(?:Calle|Camino|Avenida|Paseo|Via|Vista|Plaza)(?:[ \t]+(?:de|del|la|las|los|el)?[ \t]*[A-Z][a-z']+){{1,3}}\b|(?:[A-Z]+[ \t]+){{1,4}}(?:STREET|ROAD|AVENUE|LANE|DRIVE|CLOSE|COURT|WAY|PLACE|CRESCENT|TERRACE|BOULEVARD|GROVE|GARDENS|SQUARE|HILL|PARK|ST|RD|AVE|DR|LN|BLVD)\b)(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    )
}

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    all.push(Box::new(StreetAddress {
        // Every street ends with one of its suffix words.
        cue: compile("street-address", &format!(r"(?:{SUFFIX}|{SUFFIX_ABBR})\b|Calle|Camino|Avenida|Paseo|Via|Vista|Plaza|(?:STREET|ROAD|AVENUE|LANE|DRIVE|CLOSE|COURT|WAY|PLACE|CRESCENT|TERRACE|BOULEVARD|GROVE|GARDENS|SQUARE|HILL|PARK|ST|RD|AVE|DR|LN|BLVD)\b"))?,
        street: compile("street-address", &street_pattern())?,
        tail: compile(
            "street-address",
            &format!(
                r"^(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Flat)\.?[ \t]*#?[0-9A-Za-z]+)?(?:,[ \t]*[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){{0,2}})?(?:,?[ \t]+(?:{UK_POSTCODE}|{US_STATE_ZIP})\b)?"
            ),
        )?,
        postcode_in_tail: compile("street-address", &format!(r"(?:{UK_POSTCODE}|{US_STATE_ZIP})$"))?,
    }));
    // Continental formats: the street name first ("Lindenallee 12", "Calle de Alcalá 5",
    // "ul. Polna 3/4"), or a lower-case street type after the number ("8 rue des Lilas").
    let cap = r"(?u:\p{Lu}[\p{L}'’\-]*\.?)";
    let particle = r"(?u:de|del|de[ \t]+la|de[ \t]+los|de[ \t]+las|da|do|dos|das|des|du|la|le|les|d['’]|l['’]|y|i|di|della|van|von|der|den|het|am|an|im|auf|sur|en)";
    let words = format!(r"(?:{cap}|{particle})(?:[ \t]+(?:{cap}|{particle})){{0,4}}");
    let number = r"[0-9]{1,4}[A-Za-z]?(?:[ \t]*(?:bis|ter))?(?:[\-/][0-9]{1,4}[A-Za-z]?)?(?:[ \t]+m\.[ \t]*[0-9]{1,4})?(?:[ \t]+[A-Z][ \t]+[0-9]{1,3}\b)?";
    let compound = r"(?u:(?:\p{Lu}[\p{L}\-]*(?i:stra(?:ß|ss)e|str\.|allee|weg|platz|gasse|ring|damm|ufer|chaussee|steig|pfad|markt|gracht|straat|laan|plein|kade|singel|dijk|steeg|vej|gade|gatan|vägen|gränd|katu|tie|kuja))|\p{Lu}\p{Ll}+[ \t]+(?:Straße|Strasse|Str\.|Allee|Weg|Platz|Gasse|Ring|Damm))";
    let prefix = r"(?:Calle|C/|Avenida|Avda\.|Av\.|Paseo|Plaza|Pza\.|Camino|Carrer|Rua|Travessa|Largo|Praça|Via|Viale|Piazza|Corso|Vicolo|Rue|Avenue|Boulevard|Bd\.?|Place|Chemin|Allée|Impasse|Quai|ul\.|ulica|al\.|aleja|os\.|pl\.|Heol|Ffordd|Stryd|Am|An[ \t]+der|Auf[ \t]+dem|Im|Zum|Zur)";
    let french =
        r"(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|route|cours|passage|heol|ffordd|stryd)";
    // Five digits (DE, FR, ES, IT, FI), NL, PL, PT, four digits (AT, CH, BE, DK), UK, and the
    // Swedish `NNN NN`.
    let postcode = r"(?:[0-9]{5}|[0-9]{4}[ \t]?[A-Z]{2}|[0-9]{2}-[0-9]{3}|[0-9]{4}-[0-9]{3}|[0-9]{4}|[A-Z]{1,2}[0-9][A-Z0-9]?[ \t]?[0-9][A-Z]{2}|[0-9]{3}[ \t][0-9]{2})";
    let town_word = r"(?u:\p{Lu}[\p{L}'’\-]*)";
    let town = format!(r"{town_word}(?:[ \t]+(?:(?:am|an|im|sur|en|de|del|di)[ \t]+)?{town_word}){{0,2}}");
    all.push(Box::new(Continental {
        // Every match holds one of these: a suffix before the number, a prefix word, or a
        // French street type between spaces.
        cue: compile(
            "continental-address",
            r"(?i:stra(?:ß|ss)e|str\.|allee|weg|platz|gasse|ring|damm|ufer|chaussee|steig|pfad|markt|gracht|straat|laan|plein|kade|singel|dijk|steeg|vej|gade|gatan|vägen|gränd|katu|tie|kuja|Straße|Strasse|Str\.|Allee|Weg|Platz|Gasse|Ring|Damm)[ \t]+[0-9]|\b(?:Calle|C/|Avenida|Avda\.|Av\.|Paseo|Plaza|Pza\.|Camino|Carrer|Rua|Travessa|Largo|Praça|Via|Viale|Piazza|Corso|Vicolo|Rue|Avenue|Boulevard|Bd|Place|Chemin|Allée|Impasse|Quai|ul\.|ulica|al\.|aleja|os\.|pl\.|Heol|Ffordd|Stryd|Am|An|Auf|Im|Zum|Zur)[ \t]|[ \t](?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|route|cours|passage|heol|ffordd|stryd)[ \t]",
        )?,
        street: compile(
            "continental-address",
            &format!(
                r"(?:\b{compound}[ \t]+{number}|\b{prefix}[ \t]+{words},?[ \t]+(?:n\.?º[ \t]*|nr\.?[ \t]*)?{number}|\b{number},?[ \t]+{french}[ \t]+{words})(?:,?[ \t]+{postcode}[ \t]+{town})?\b"
            ),
        )?,
        postcode_town: compile("continental-address", &format!(r",?[ \t]+{postcode}[ \t]+{town}\b$"))?,
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
        &[
            STREET_TRIGGER,
            r"[A-Z][ \t]+(?:STREET|ROAD|AVENUE|LANE|DRIVE|CLOSE|COURT|WAY|PLACE|CRESCENT|TERRACE|BOULEVARD|GROVE|GARDENS|SQUARE|HILL|PARK|ST|RD|AVE|DR|LN|BLVD)\b",
            r"[0-9][ \t]+(?:Calle|Camino|Avenida|Paseo|Via|Vista|Plaza)[ \t]+[A-Z]",
        ]
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

/// A street in a continental layout; a postcode and town on the same line make it certain.
struct Continental {
    cue: Regex,
    street: Regex,
    postcode_town: Regex,
}

impl Recognizer for Continental {
    fn name(&self) -> &'static str {
        "continental-address"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::StreetAddress]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r"(?i)(?:stra(?:ss|ß)e|str\.|allee|weg|platz|gasse|ring|damm|ufer|gracht|straat|laan|plein|kade|singel|dijk|steeg|vej|gade|gatan|katu|tie|kuja)[ \t]+[0-9]",
            r"\b(?:Calle|C/|Avenida|Avda|Av\.|Paseo|Plaza|Camino|Carrer|Rua|Travessa|Largo|Via|Viale|Piazza|Corso|Rue|Avenue|Boulevard|Place|Chemin|Impasse|Quai|ul\.|ulica|al\.|aleja|Heol|Ffordd|Stryd|Am|An der|Auf dem|Im|Zum|Zur)[ \t]",
            r"[0-9][ \t]+(?:bis[ \t]+|ter[ \t]+)?(?:rue|avenue|av\.|boulevard|bd|place|chemin|impasse|quai|route|cours|passage|heol|ffordd|stryd)[ \t]",
            "Praça|Allée|allée",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_cued_lines(&self.street, &self.cue, t) {
            let s = m.as_str();
            // "Am Montag 5 Tage", "Im Jahr 2020": the short German prefixes need a postcode.
            let weak_prefix = ["Am ", "Im ", "Zum ", "Zur ", "An der ", "Auf dem ", "Place ", "Avenue ", "Via "]
                .iter()
                .any(|p| s.starts_with(p));
            // "During 3", "Spring 5": a compound whose suffix is also an English word ending
            // needs a postcode; "…straße 5" and "…gracht 12" do not.
            let first = s.split([' ', '\t']).next().unwrap_or("");
            let lower = first.to_lowercase();
            let strong = ["straße", "strasse", "str.", "allee", "gasse", "platz", "gracht", "straat", "chaussee"]
                .iter()
                .any(|x| lower.ends_with(x));
            let compound = first.starts_with(char::is_uppercase)
                && s[first.len()..].trim_start().starts_with(|c: char| c.is_ascii_digit());
            let weak_compound = compound && !strong;
            if self.postcode_town.is_match(s) {
                out.push(finding(EntityKind::StreetAddress, m.start(), m.end(), 0.85, &["street-name", "postcode"]));
            } else if !weak_prefix && !weak_compound {
                out.push(finding(EntityKind::StreetAddress, m.start(), m.end(), 0.7, &["street-name"]));
            }
        }
    }
}
