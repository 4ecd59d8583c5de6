//! PERSON, by honest heuristics: a title ("Dr Jane Smith"), a salutation or sign-off ("Dear
//! Jane", "Regards,\nJane Smith"), a form field ("Name: Jane Smith"), or two or three
//! capitalised words whose first is a known given name and last a known surname.
//!
//! The span is the name without the title, greeting or field label.

use std::sync::Arc;

use perimeter_types::EntityKind;
use regex::Regex;

use super::{compile, finding};
use crate::context::before;
use crate::names::Names;
use crate::scope::{find_in_lines, find_in_runs, name_runs, positions_of};
use crate::{DetectError, Finding, NormalizedText, Recognizer};

/// A capitalised name word, Unicode letters allowed: `Smith`, `O'Brien`, `McDonald`,
/// `Smith-Jones`, `Zoë`.
const NAME: &str = r"(?u:(?:Mc|Mac|O['’]|D['’])?\p{Lu}\p{Ll}+(?:[\-'’]\p{Lu}?\p{Ll}+)*)";
/// An initial: `J.`
const INITIAL: &str = r"(?u:\p{Lu}\.)";
/// An upper-case name word in forms: `SMITH`.
const UPPER: &str = r"(?u:\p{Lu}{2,}(?:[\-'’]\p{Lu}+)*)";

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>, names: &Arc<Names>) -> Result<(), DetectError> {
    let word = format!("(?:{NAME}|{INITIAL})");
    let names3 = format!("{word}(?:[ \t]{word}){{0,2}}");
    all.push(Box::new(Titled {
        re: compile("person-title", &format!(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord)\.?[ \t]+{names3}"))?,
    }));
    all.push(Box::new(Salutation {
        greeting: compile("person-salutation", &format!(r"\b(?:Dear|Hi|Hello|Hey)[ \t]+{names3}"))?,
        signoff: compile(
            "person-salutation",
            &format!(
                r"(?i:\b(?:(?:kind|best|warm|many)[ \t]+(?:regards|wishes|thanks)|regards|sincerely|yours[ \t]+(?:sincerely|faithfully|truly)|thanks|thank[ \t]+you|cheers|best))[ \t]*,?[ \t]*\r?\n[ \t]*{names3}"
            ),
        )?,
        names: names.clone(),
    }));
    let value_word = format!("(?:{NAME}|{UPPER}|{INITIAL})");
    all.push(Box::new(FormField {
        re: compile(
            "person-form",
            &format!(
                r#"(?i:\b(?:full[ \t]+name|first[ \t]+name|last[ \t]+name|surname|given[ \t]+name|patient(?:[ \t]+name)?|employee(?:[ \t]+name)?|contact(?:[ \t]+name)?|customer(?:[ \t]+name)?|client(?:[ \t]+name)?|applicant(?:[ \t]+name)?|account[ \t]+holder|cardholder(?:[ \t]+name)?|signed(?:[ \t]+by)?|signature|member(?:[ \t]+name)?|tenant|guest|passenger|traveller|recipient|beneficiary|payee|attn|attention|to|from|(?:reported|requested|prepared|approved|referred)[ \t]+by|next[ \t]+of[ \t]+kin|emergency[ \t]+contact|name))["']?[ \t]*(?:\*\*|__)?[:=](?:\*\*|__)?[ \t]*["']?{value_word}(?:(?:,[ \t]?|[ \t]){value_word}){{0,3}}"#
            ),
        )?,
        names: names.clone(),
    }));
    // Runs of capitalised words separated by single spaces. No leading `\b`: an ASCII boundary
    // does not see "Émile"; a letter before the run is checked by hand.
    let cap_word = r"(?u:(?:Mc|Mac|O['’])?\p{Lu}\p{Ll}+(?:-\p{Lu}\p{Ll}+)?)";
    all.push(Box::new(NameList {
        re: compile("person-names", &format!(r"{cap_word}(?:[ ](?:[A-Z]\.|{cap_word}))+"))?,
        names: names.clone(),
    }));
    Ok(())
}

/// Capitalised words that are not names, seen after titles, greetings and field labels.
#[rustfmt::skip]
const NOT_NAMES: &[&str] = &[
    "sir", "madam", "sirs", "team", "all", "everyone", "customer", "customers", "colleague", "colleagues", "world",
    "there", "folks", "friends", "guys", "members", "member", "manager", "hiring", "valued", "reader", "editor",
    "admin", "support", "the", "this", "that", "it", "you", "your", "our", "we", "us", "me", "them", "and", "or",
    "of", "out", "department", "sales", "none", "unknown", "tbd", "yes", "no", "not", "please", "see", "service",
    "services", "reception", "it", "hr", "help", "helpdesk", "n", "a", "an", "mr", "mrs", "ms", "miss", "mx", "dr",
    "prof", "on", "in", "at", "to", "for", "from", "with", "by", "is", "are", "was", "date", "signature", "name",
    "address", "phone", "email", "number", "id", "here", "above", "below", "same", "applicant", "patient", "hello",
    "hi", "hey", "dear", "thanks", "regards", "my", "dob", "mrn", "nhs", "ssn", "tel", "mob", "ref", "member", "account",
];

/// Words that make a capitalised phrase a group of people rather than a person.
#[rustfmt::skip]
const ORG_WORDS: &[&str] = &[
    "team", "department", "dept", "sales", "support", "service", "services", "reception", "helpdesk", "staff",
    "office", "desk", "committee", "board", "group", "unit", "ward", "practice", "partners",
];

fn is_org_word(word: &str) -> bool {
    let w = word.trim_end_matches('.').to_lowercase();
    ORG_WORDS.contains(&w.as_str())
}

fn is_not_name(word: &str) -> bool {
    let w = word.trim_end_matches('.').to_lowercase();
    NOT_NAMES.contains(&w.as_str())
}

/// Trims a possessive `'s` and trailing spaces from a name span, and drops trailing initials
/// that belong to the next sentence ("Dr Smith A." is rare; "Smith. A" never matches).
fn name_end(t: &str, start: usize, end: usize) -> usize {
    let mut s = &t[start..end];
    s = s.strip_suffix("'s").or_else(|| s.strip_suffix("’s")).unwrap_or(s);
    s = s.trim_end_matches([' ', '\t', ',']);
    // A field label after the name on the same line ("James Carter DOB: …").
    while let Some((head, last)) = s.rsplit_once([' ', '\t', ',']) {
        if !is_not_name(last) {
            break;
        }
        s = head.trim_end_matches([' ', '\t', ',']);
    }
    start + s.len()
}

/// The words of a span (split at spaces, tabs and commas).
fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '\t', ',']).filter(|w| !w.is_empty())
}

/// At least one word of the span is a full name word, not an initial.
fn has_full_word(s: &str) -> bool {
    words(s).any(|w| !w.ends_with('.'))
}

struct Titled {
    re: Regex,
}

impl Recognizer for Titled {
    fn name(&self) -> &'static str {
        "person-title"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Person]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord)\.?[ \t]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            // Skip the title, its full stop and the spaces after it.
            let title_len = m.as_str().find([' ', '\t']).unwrap_or(0);
            let rest = &m.as_str()[title_len..];
            let start = m.start() + title_len + (rest.len() - rest.trim_start().len());
            // "12 Oak Dr Springfield": an address, not a doctor.
            if m.as_str().starts_with("Dr") && after_house_number(t, m.start()) {
                continue;
            }
            let end = name_end(t, start, m.end());
            let span = &t[start..end];
            if span.is_empty() || !has_full_word(span) || words(span).next().is_some_and(is_not_name) {
                continue;
            }
            out.push(finding(EntityKind::Person, start, end, 0.85, &["title"]));
        }
    }
}

/// The text before `pos` on its line looks like "12 Oak " or "221B Baker " (a house number and
/// capitalised words).
fn after_house_number(t: &str, pos: usize) -> bool {
    // A bounded look back keeps this O(1) per match (a long line of "Dr Dr Dr …" is not
    // quadratic).
    let window = before(t, pos, 64);
    let before = window.rsplit('\n').next().unwrap_or(window);
    let mut ws: Vec<&str> = before.split_whitespace().collect();
    let mut capitalised = 0;
    while let Some(w) = ws.pop() {
        if w.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            return capitalised > 0;
        }
        if !w.bytes().next().is_some_and(|b| b.is_ascii_uppercase()) || capitalised == 4 {
            return false;
        }
        capitalised += 1;
    }
    false
}

struct Salutation {
    greeting: Regex,
    signoff: Regex,
    names: Arc<Names>,
}

impl Salutation {
    fn push(&self, t: &str, start: usize, end: usize, how: &'static str, out: &mut Vec<Finding>) {
        let end = name_end(t, start, end);
        let span = &t[start..end];
        let Some(first) = words(span).next() else { return };
        if !has_full_word(span) || words(span).any(is_not_name) {
            return;
        }
        if self.names.is_given(first) {
            out.push(finding(EntityKind::Person, start, end, 0.85, &[how, "name-list"]));
        } else {
            out.push(finding(EntityKind::Person, start, end, 0.7, &[how]));
        }
    }
}

impl Recognizer for Salutation {
    fn name(&self) -> &'static str {
        "person-salutation"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Person]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"\b(?:Dear|Hi|Hello|Hey)[ \t]", r"(?i)\b(?:regards|sincerely|yours|thanks|thank you|cheers|best|wishes)\b"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.greeting.find_iter(t) {
            let greet_len = m.as_str().find([' ', '\t']).unwrap_or(0);
            let rest = &m.as_str()[greet_len..];
            let start = m.start() + greet_len + (rest.len() - rest.trim_start().len());
            self.push(t, start, m.end(), "salutation", out);
        }
        for m in self.signoff.find_iter(t) {
            // The name is the last line of the match.
            let line = m.as_str().rfind('\n').map_or(0, |i| i + 1);
            let rest = &m.as_str()[line..];
            let start = m.start() + line + (rest.len() - rest.trim_start().len());
            self.push(t, start, m.end(), "sign-off", out);
        }
    }
}

/// Field labels whose value is as often an organisation as a person.
const WEAK_LABELS: &[&str] =
    &["to", "from", "attn", "attention", "recipient", "beneficiary", "payee", "contact", "customer", "client", "by"];

/// The last word of each field label in the form-field pattern.
#[rustfmt::skip]
const LABEL_ENDS: &[&str] = &[
    "name", "surname", "patient", "employee", "contact", "customer", "client", "applicant", "holder", "cardholder",
    "signed", "by", "signature", "member", "tenant", "guest", "passenger", "traveller", "recipient", "beneficiary",
    "payee", "attn", "attention", "to", "from", "kin",
];

/// Positions of the `:` and `=` that end a field label: every form field match holds one.
/// Before the separator come, right to left, an optional `**` or `__`, spaces, an optional
/// quote, and the label's last word, which is a whole run of letters.
fn label_separators(t: &str) -> impl Iterator<Item = usize> + '_ {
    let b = t.as_bytes();
    positions_of(t, b':', b'=').filter(move |&i| {
        let mut j = i;
        if j >= 2 && matches!(&b[j - 2..j], b"**" | b"__") {
            j -= 2;
        }
        while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
            j -= 1;
        }
        if j > 0 && matches!(b[j - 1], b'"' | b'\'') {
            j -= 1;
        }
        let mut k = j;
        while k > 0 && b[k - 1].is_ascii_alphabetic() {
            k -= 1;
        }
        LABEL_ENDS.iter().any(|w| b[k..j].eq_ignore_ascii_case(w.as_bytes()))
    })
}

struct FormField {
    re: Regex,
    names: Arc<Names>,
}

impl Recognizer for FormField {
    fn name(&self) -> &'static str {
        "person-form"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Person]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r#"(?i)\b(?:name|patient|employee|contact|customer|client|applicant|holder|cardholder|signed|signature|member|tenant|guest|passenger|traveller|recipient|beneficiary|payee|attn|attention|to|from|by|kin)["']?[ \t]*(?:\*\*|__)?[:=]"#,
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        // A field never spans lines: only lines with a label's separator are searched.
        for m in find_in_lines(&self.re, t, label_separators(t)) {
            // "Company name:", "File name:": the label must start its line or follow punctuation.
            let window = before(t, m.start(), 64);
            let lead = window.rsplit('\n').next().unwrap_or(window).trim_end();
            if lead.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()) {
                continue;
            }
            let Some(colon) = m.as_str().find([':', '=']) else { continue };
            let rest = &m.as_str()[colon + 1..];
            let start =
                m.start() + colon + 1 + (rest.len() - rest.trim_start_matches(['*', '_', ' ', '\t', '"', '\'']).len());
            // "Prepared by: People Team": a team, not a person.
            if words(&t[start..m.end()]).any(is_org_word) {
                continue;
            }
            let mut end = name_end(t, start, m.end());
            // "SMITH, John" is surname-first; "Joanne Castellano, People Partner" ends at the comma.
            if let Some(comma) = t[start..end].find(',') {
                if words(&t[start..start + comma]).count() > 1 {
                    end = start + comma;
                }
            }
            let span = &t[start..end];
            if span.is_empty() || !has_full_word(span) || words(span).next().is_some_and(is_not_name) {
                continue;
            }
            // `name: String`, `Type: Bug`: a single word counts only if it is a known name, and
            // a value followed by `<`, `(` or `::` is code. Labels that also take companies
            // ("To: Oakfield Studio") need a known given name or surname.
            let single = words(span).count() == 1;
            if words(span).last().is_some_and(Names::is_place_word) {
                continue;
            }
            if single && !self.names.is_given(span) && !self.names.is_surname(span) {
                continue;
            }
            let label = m.as_str()[..colon].trim_end_matches(['"', '\'', ' ', '\t', '*', '_']).to_ascii_lowercase();
            let first = words(span).next().unwrap_or("");
            let last = words(span).last().unwrap_or("");
            if WEAK_LABELS.iter().any(|w| label.ends_with(w))
                && !self.names.is_given(first)
                && !self.names.is_surname(last)
            {
                continue;
            }
            if t[end..].starts_with(['<', '(', '[', '{']) || t[end..].starts_with("::") {
                continue;
            }
            out.push(finding(EntityKind::Person, start, end, 0.8, &["form-field"]));
        }
    }
}

struct NameList {
    re: Regex,
    names: Arc<Names>,
}

impl NameList {
    /// The run starts a sentence or a line (where any word is capitalised).
    fn at_sentence_start(t: &str, start: usize) -> bool {
        let window = before(t, start, 16);
        let before = window.trim_end_matches([' ', '\t']);
        (before.is_empty() && window.len() == start)
            || before.ends_with(['.', '!', '?', '\n', '\r', '"', '\'', '(', ':', ';', '*', '#', '>', '|', '-', '“'])
    }
}

impl Recognizer for NameList {
    fn name(&self) -> &'static str {
        "person-names"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Person]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"(?u:\p{Lu}\p{Ll}+[ ]\p{Lu}\p{Ll}+)"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        // Only runs of letters and spaces that hold "x Y" are searched; the shortest match is
        // "Ab C." (five bytes).
        let runs = name_runs(t);
        for m in find_in_runs(&self.re, t, &runs, 5, |_| true) {
            // Inside a longer word ("deLuca", "ÅJohn").
            if t[..m.start()].chars().next_back().is_some_and(char::is_alphanumeric) {
                continue;
            }
            // Word spans within the run of capitalised words.
            let mut spans: Vec<(usize, usize)> = Vec::with_capacity(6);
            let mut pos = m.start();
            for w in m.as_str().split(' ') {
                if !w.is_empty() {
                    spans.push((pos, pos + w.len()));
                }
                pos += w.len() + 1;
            }
            let word = |i: usize| &t[spans[i].0..spans[i].1];
            let mut i = 0;
            while i + 1 < spans.len() {
                let first = word(i);
                let skip_first = !self.names.is_given(first)
                    || (i == 0 && Names::is_ambiguous_given(first) && Self::at_sentence_start(t, spans[0].0));
                let mut hit = None;
                if !skip_first {
                    // Longest first: "John F. Kennedy", "Mary Ann Smith", then "John Smith".
                    for j in [i + 2, i + 1] {
                        if j >= spans.len() || !self.names.is_surname(word(j)) {
                            continue;
                        }
                        let middle_ok = j == i + 1 || {
                            let mid = word(i + 1);
                            mid.ends_with('.') || self.names.is_given(mid) || self.names.is_surname(mid)
                        };
                        let next_is_place = spans.get(j + 1).is_some_and(|&(s, e)| Names::is_place_word(&t[s..e]));
                        if middle_ok && !next_is_place {
                            hit = Some(j);
                            break;
                        }
                    }
                }
                match hit {
                    Some(j) => {
                        out.push(finding(EntityKind::Person, spans[i].0, spans[j].1, 0.6, &["name-list"]));
                        i = j + 1;
                    }
                    None => i += 1,
                }
            }
        }
    }
}
