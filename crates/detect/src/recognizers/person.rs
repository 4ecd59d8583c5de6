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
/// Titles before a name, English and continental (French, German, Spanish, Portuguese,
/// Italian, Dutch, Polish), each with an optional full stop. `M.` (Monsieur) needs its stop.
const TITLES: &str = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord|Madame|Mme|Mlle|Mademoiselle|Monsieur|Frau|Herr|Sr|Sra|Srta|Señor|Señora|Señorita|Sig|Sig\.ra|Signor|Signora|Dott|Dott\.ssa|Mevrouw|Mevr|Meneer|Dhr|Pan|Pani)\.?";

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>, names: &Arc<Names>) -> Result<(), DetectError> {
    let word = format!("(?:{NAME}|{INITIAL})");
    let names3 = format!("{word}(?:[ \t]{word}){{0,2}}");
    all.push(Box::new(Titled { re: compile("person-title", &format!(r"\b(?:{TITLES}|M\.)[ \t]+{names3}"))? }));
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
                r#"(?i:\b(?:full[ \t]+name|first[ \t]+name|last[ \t]+name|surname|given[ \t]+name|patient(?:[ \t]+name)?|employee(?:[ \t]+name)?|contact(?:[ \t]+name)?|customer(?:[ \t]+name)?|client(?:[ \t]+name)?|applicant(?:[ \t]+name)?|account[ \t]+holder|cardholder(?:[ \t]+name)?|signed(?:[ \t]+by)?|signature|member(?:[ \t]+name)?|tenant|guest|passenger|traveller|recipient|beneficiary|payee|attn|attention|to|from|(?:reported|requested|prepared|approved|referred)[ \t]+by|next[ \t]+of[ \t]+kin|emergency[ \t]+contact|name|{ROLE_LABELS}))(?:\(s\))?(?:[ \t]*[0-9]{{1,2}})?["']?[ \t]*(?:\*\*|__)?[:=](?:\*\*|__)?[ \t]*["']?{value_word}(?:(?:,[ \t]?|[ \t]){value_word}){{0,3}}"#
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
    all.push(Box::new(NameColumn {
        // Five literals, which the regex engine finds with a vectorised search; the column
        // name around each is checked by hand (as one `(?i)` alternation of the names it
        // scanned prose at a fifth of the speed).
        column: compile("person-column", r#"[Nn]ame|NAME|"family"|"given""#)?,
        party: compile("person-column", "<Nm>")?,
    }));
    all.push(Box::new(Layout {
        speaker: compile(
            "person-layout",
            &format!(
                r"^[ \t]*(?:\[(?u:[^\]\n]){{1,25}}\][ \t]*|(?:[0-9]{{1,4}}[/.\-][0-9]{{1,2}}[/.\-][0-9]{{2,4}},?[ \t]+)?[0-9]{{1,2}}:[0-9]{{2}}(?::[0-9]{{2}})?(?:[ \t]*[AaPp][Mm])?[ \t]*[\-|]?[ \t]*)?(?:\*\*)?({NAME}(?:[ ]{NAME}){{0,2}})(?:\*\*)?(?::[ \t]+(?u:\S)|,?[ \t]+\[?[0-9]{{1,2}}:[0-9]{{2}}(?:[ \t]*[AaPp][Mm])?\]?[ \t]*\r?$)"
            ),
        )?,
        names: names.clone(),
    }));
    Ok(())
}

/// Field labels for a person's name in other forms and languages, and roles whose value is
/// usually a person (as a regex alternation, case-insensitive).
const ROLE_LABELS: &str = r"forenames?|middle[ \t]+names?|family[ \t]+name|maiden[ \t]+name|nom(?:[ \t]+de[ \t]+famille)?|prénom|nombre(?:[ \t]+completo)?|apellidos?|naam|voornaam|achternaam|vorname|nachname|familienname|imię(?:[ \t]+i[ \t]+nazwisko)?|nazwisko|cognome|nome|contact[ \t]+person|caller|nurse|sponsor|visitor|driver|researcher|witness|author|owner|assignee|reporter|doctor|physician|clinician|consultant|carer|parent(?:/(?:carer|guardian))?|guardian|spouse|interviewer|claimant|policy[ \t]?holder|insured|sender|participant|attendee|requester|approver|auftraggeber|kontoinhaber|inhaber|empfänger|titular|titulaire|destinatario|beneficiario|bénéficiaire|paciente|patientin|pacjent|(?:submitted|completed|witnessed|checked|reviewed|verified|issued|raised|logged|seen|recorded|entered|assigned|written|authored)[ \t]+(?:by|to)";

/// Labels (last words) whose value is a name or a name part, so a single capitalised word after
/// them is a name even when it is not on the lists ("Surname: Okafor").
#[rustfmt::skip]
const NAME_PART_LABELS: &[&str] = &[
    "surname", "forename", "forenames", "forename(s)", "first name", "last name", "given name", "family name",
    "middle name", "maiden name", "nom", "prénom", "nombre", "apellido", "apellidos", "naam", "voornaam",
    "achternaam", "vorname", "nachname", "familienname", "imię", "nazwisko", "cognome", "nome",
];

/// Single words after a name label that are types or form values, not names.
#[rustfmt::skip]
const VALUE_WORDS: &[&str] = &[
    "string", "str", "text", "varchar", "char", "optional", "required", "null", "none", "unknown", "redacted",
    "withheld", "blank", "empty", "value", "example", "sample", "test", "user", "anonymous",
];

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
    "surname", "surnames", "forename", "forenames", "first", "last", "given", "middle", "family", "full", "maiden",
    "nom", "prénom", "nombre", "apellido", "apellidos", "naam", "voornaam", "achternaam", "vorname", "nachname",
    "imię", "nazwisko", "cognome", "nome", "reservations", "bookings", "accounts", "admissions", "enquiries",
    "billing", "payroll", "claims", "careers", "recruitment", "finance", "operations", "security", "compliance",
    "kollegin", "kollege", "kollegen", "doktor", "professor", "direktor", "direktorin", "docteur", "directeur",
    "directrice", "président", "présidente", "maître", "doctora", "licenciado", "licenciada", "ingeniero", "dottore",
    "dottoressa", "avvocato", "ingegnere", "dokter", "doktór", "profesor", "dyrektor", "prezes", "minister",
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
        &[
            r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord)\.?[ \t]",
            r"\b(?:Madame|Mme|Mlle|Mademoiselle|Monsieur|M\.|Frau|Herr|Sr|Sra|Srta|Sig|Signor|Signora|Dott|Mevrouw|Mevr|Meneer|Dhr|Pan|Pani)\.?[ \t]|Señor",
        ]
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
            // "John M. Smith", "Kate Sr Lee": an initial or suffix inside a name, not a title.
            let title = &m.as_str()[..title_len];
            if matches!(title, "M." | "Sr" | "Sr.") && after_capitalised_word(t, m.start()) {
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

/// The word right before `pos` (across spaces) is capitalised: "John M. Smith".
fn after_capitalised_word(t: &str, pos: usize) -> bool {
    let prev = before(t, pos, 32).trim_end_matches([' ', '\t']);
    let word = prev.rsplit([' ', '\t', '\n']).next().unwrap_or("");
    word.chars().next().is_some_and(char::is_uppercase) && word.chars().all(char::is_alphabetic)
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
        // "Dear Bookings team", "Hi Payroll Team": a group, whatever its first word.
        let next = t[end..].trim_start_matches([' ', '\t']);
        let next_word = next.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
        if words(span).any(is_org_word) || is_org_word(next_word) {
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
#[rustfmt::skip]
const WEAK_LABELS: &[&str] = &[
    "to", "from", "attn", "attention", "recipient", "beneficiary", "payee", "contact", "customer", "client", "by",
    "caller", "nurse", "sponsor", "visitor", "driver", "researcher", "witness", "author", "owner", "assignee",
    "reporter", "doctor", "physician", "clinician", "consultant", "carer", "parent", "guardian", "spouse",
    "interviewer", "claimant", "policyholder", "policy holder", "insured", "sender", "participant", "attendee", "requester", "approver",
    "auftraggeber", "inhaber", "empfänger", "titular", "titulaire", "destinatario", "beneficiario", "bénéficiaire",
];

/// The last word of each field label in the form-field pattern.
#[rustfmt::skip]
const LABEL_ENDS: &[&str] = &[
    "name", "surname", "patient", "employee", "contact", "customer", "client", "applicant", "holder", "cardholder",
    "signed", "by", "signature", "member", "tenant", "guest", "passenger", "traveller", "recipient", "beneficiary",
    "payee", "attn", "attention", "to", "from", "kin", "forename", "forenames", "names", "famille", "prénom",
    "nombre", "completo", "apellido", "apellidos", "naam", "voornaam", "achternaam", "vorname", "nachname",
    "familienname", "imię", "nazwisko", "cognome", "nome", "nom", "person", "caller", "nurse", "sponsor", "visitor",
    "driver", "researcher", "witness", "author", "owner", "assignee", "reporter", "doctor", "physician", "clinician",
    "consultant", "carer", "parent", "guardian", "spouse", "interviewer", "claimant", "policyholder", "insured",
    "sender", "participant", "attendee", "requester", "approver", "auftraggeber", "kontoinhaber", "inhaber",
    "empfänger", "titular", "titulaire", "destinatario", "beneficiario", "bénéficiaire", "paciente", "patientin",
    "pacjent",
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
        // "Parent 2:", "Forename(s):".
        let digits = b[..j].iter().rev().take_while(|c| c.is_ascii_digit()).count();
        if (1..=2).contains(&digits) {
            j -= digits;
            while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
                j -= 1;
            }
        }
        if j >= 3 && &b[j - 3..j] == b"(s)" {
            j -= 3;
        }
        // Letters, accented ones included ("Imię", "Prénom").
        let mut k = j;
        while k > 0 && (b[k - 1].is_ascii_alphabetic() || b[k - 1] >= 0x80) {
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
            r#"(?i)(?:forenames?|names|famille|prénom|nombre|completo|apellidos?|naam|voornaam|achternaam|vorname|nachname|familienname|imię|nazwisko|cognome|nome|nom|person|caller|nurse|sponsor|visitor|driver|researcher|witness|author|owner|assignee|reporter|doctor|physician|clinician|consultant|carer|parent|guardian|spouse|interviewer|claimant|policyholder|insured|sender|participant|attendee|requester|approver|auftraggeber|inhaber|empfänger|titular|titulaire|destinatario|beneficiario|bénéficiaire|paciente|patientin|pacjent)(?:\(s\))?(?:[ \t]*[0-9]{1,2})?["']?[ \t]*(?:\*\*|__)?[:=]"#,
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
            // The label without quotes, emphasis, a number or "(s)": "parent 2", "forename".
            let label = m.as_str()[..colon]
                .trim_end_matches(['"', '\'', ' ', '\t', '*', '_'])
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == ' ' || c == '\t')
                .trim_end_matches("(s)")
                .to_lowercase();
            let name_part_label = NAME_PART_LABELS.iter().any(|w| label.ends_with(w));
            let known = self.names.is_given(span) || self.names.is_surname(span);
            // After a name-part label ("Surname:") a single word is a name unless it is a type or
            // a form value.
            let name_part = name_part_label && !VALUE_WORDS.contains(&span.to_lowercase().as_str());
            if single && !known && !name_part {
                continue;
            }
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

/// Names placed by the layout of the text rather than by a label word: chat speaker labels at
/// the start of a line (`Ana Ruiz: on my way`, `[09:14] Ana:`), inverted names in a table cell
/// or after a label (`"Okafor, Chidi"`), airline passenger names (`OKAFOR/CHIDI MR`) and a line
/// that is only an all-capitals name (`CHIDI OKAFOR`, as in payment messages).
struct Layout {
    speaker: Regex,
    names: Arc<Names>,
}

/// Given names that are also countries, states or cities ("Paris, France", "Austin, Texas").
#[rustfmt::skip]
const PLACE_GIVEN: &[&str] = &[
    "france", "jordan", "georgia", "chad", "israel", "india", "kenya", "china", "ireland", "england", "virginia",
    "carolina", "florida", "indiana", "dakota", "austin", "houston", "dallas", "denver", "london", "paris", "sydney",
    "victoria", "madison", "phoenix", "orlando", "lincoln", "washington", "charlotte", "savannah", "aurora",
    "alexandria", "columbia", "holland", "brittany", "asia", "america", "africa", "italia", "germany", "spain",
];

impl Layout {
    fn clean_words(ws: &[&str]) -> bool {
        !ws.iter().any(|w| is_not_name(w) || is_org_word(w) || Names::is_place_word(w))
    }

    /// Chat speaker labels; accepted names are also found where they recur in the text.
    fn speakers(&self, t: &str, out: &mut Vec<Finding>) {
        let mut candidates: Vec<(usize, usize)> = Vec::new();
        let mut next_line = 0;
        for colon in positions_of(t, b':', b':') {
            if colon < next_line {
                continue;
            }
            let ls = t.as_bytes()[..colon].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let le = t.as_bytes()[colon..].iter().position(|&b| b == b'\n').map_or(t.len(), |i| colon + i);
            next_line = le + 1;
            let mut cut = (ls + 96).min(le);
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            // The capture search is slower; most lines with a colon are not speaker labels.
            if !self.speaker.is_match(&t[ls..cut]) {
                continue;
            }
            if let Some(g) = self.speaker.captures(&t[ls..cut]).and_then(|c| c.get(1)) {
                candidates.push((ls + g.start(), ls + g.end()));
            }
        }
        let chat_like = candidates.len() >= 2;
        let mut accepted: Vec<&str> = Vec::new();
        for &(s, e) in &candidates {
            let span = &t[s..e];
            let ws: Vec<&str> = words(span).collect();
            if !Self::clean_words(&ws) {
                continue;
            }
            let (first, last) = (ws[0], ws[ws.len() - 1]);
            let given = self.names.is_given(first);
            let ok = if ws.len() == 1 {
                chat_like && given && !Names::is_ambiguous_given(first)
            } else {
                (given && self.names.is_surname(last)) || (chat_like && (given || self.names.is_surname(last)))
            };
            if ok {
                out.push(finding(EntityKind::Person, s, e, 0.7, &["speaker-label"]));
                if !accepted.contains(&span) {
                    accepted.push(span);
                }
            }
        }
        // The same name elsewhere in the conversation ("thanks Ana").
        for name in accepted {
            let mut from = 0;
            while let Some(i) = t[from..].find(name) {
                let (s, e) = (from + i, from + i + name.len());
                from = e;
                let glued = t[..s].chars().next_back().is_some_and(char::is_alphanumeric)
                    || t[e..].chars().next().is_some_and(char::is_alphanumeric);
                if !glued && !candidates.iter().any(|&(cs, _)| cs == s) {
                    out.push(finding(EntityKind::Person, s, e, 0.6, &["speaker-label", "repeat"]));
                }
            }
        }
    }

    /// `Surname, Given` where a cell or a value starts and ends.
    fn inverted(&self, t: &str, out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        for comma in positions_of(t, b',', b',') {
            if b.get(comma + 1) != Some(&b' ') {
                continue;
            }
            // The surname: letters (any script), `-` and `'` back to a cell start.
            let mut s = comma;
            while s > 0 && (b[s - 1].is_ascii_alphabetic() || b[s - 1] >= 0x80 || matches!(b[s - 1], b'-' | b'\'')) {
                s -= 1;
            }
            if s == comma || !t.is_char_boundary(s) {
                continue;
            }
            let lead = t[..s].trim_end_matches([' ', '\t']);
            let cell_start = lead.is_empty()
                || lead.ends_with(['\n', '"', '|', '\t', ';', ':', '(', '>'])
                || t[lead.len()..s].contains('\t');
            if !cell_start {
                continue;
            }
            let surname = &t[s..comma];
            // The given name and an optional middle name or initial.
            let rest = &t[comma + 2..];
            let mut e = comma + 2;
            let mut ws: Vec<&str> = Vec::new();
            for w in rest.split(' ').take(2) {
                let len =
                    w.find(|c: char| !(c.is_alphabetic() || c == '-' || c == '\'' || c == '.')).unwrap_or(w.len());
                let word = &w[..len];
                if !word.chars().next().is_some_and(char::is_uppercase) {
                    break;
                }
                ws.push(word);
                e = comma + 2 + (word.as_ptr() as usize - rest.as_ptr() as usize) + len;
                if len < w.len() {
                    break;
                }
            }
            let Some(&given) = ws.first() else { continue };
            if let Some(second) = ws.get(1) {
                let initial = second.trim_end_matches('.').chars().count() == 1;
                if !initial && !self.names.is_given(second) {
                    e -= second.len() + 1;
                }
            }
            let after = t[e..].chars().next();
            let cell_end = after.is_none_or(|c| matches!(c, '\n' | '\r' | '"' | '|' | '\t' | ';' | ',' | ')' | '<'));
            let surname_ok = self.names.is_surname(surname) && surname.chars().next().is_some_and(char::is_uppercase);
            let given_ok = self.names.is_given(given)
                && !Names::is_ambiguous_given(given)
                && !with_lower(given, |g| PLACE_GIVEN.contains(&g));
            if cell_end && surname_ok && given_ok && Self::clean_words(&[surname, given]) {
                out.push(finding(EntityKind::Person, s, e, 0.7, &["inverted-name", "name-list"]));
            }
        }
    }

    /// `SURNAME/GIVEN` (airline passenger name records), with an optional title after it.
    fn passenger(&self, t: &str, out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        let upper_word = |w: &str| w.len() >= 2 && w.bytes().all(|c| c.is_ascii_uppercase());
        for slash in positions_of(t, b'/', b'/') {
            let mut s = slash;
            while s > 0
                && (b[s - 1].is_ascii_uppercase() || (b[s - 1] == b' ' && s >= 2 && b[s - 2].is_ascii_uppercase()))
            {
                s -= 1;
            }
            if s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] >= 0x80) {
                continue;
            }
            let mut left: Vec<&str> = t[s..slash].split(' ').collect();
            if left.len() > 3 || !left.iter().all(|w| upper_word(w)) {
                continue;
            }
            // Leading words that are not surnames are labels ("PAX OKAFOR/CHIDI").
            while left.len() > 1 && !self.names.is_surname(left[0]) {
                s += left[0].len() + 1;
                left.remove(0);
            }
            let mut e = slash + 1;
            while e < b.len() && b[e].is_ascii_uppercase() {
                e += 1;
            }
            if e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] >= 0x80) {
                continue;
            }
            let given = &t[slash + 1..e];
            let given = given
                .strip_suffix("MR")
                .or_else(|| given.strip_suffix("MRS"))
                .filter(|g| self.names.is_given(g))
                .unwrap_or(given);
            let e = slash + 1 + given.len();
            if upper_word(given) && self.names.is_given(given) && left.iter().any(|w| self.names.is_surname(w)) {
                out.push(finding(EntityKind::Person, s, e, 0.75, &["passenger-name", "name-list"]));
            }
        }
    }

    /// A line that is only a given name and a surname in capitals.
    fn capital_lines(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for r in &text.runs().upper {
            if r.digits > 0 || r.upper < 5 {
                continue;
            }
            let run = &t[r.start..r.end];
            let s = r.start + (run.len() - run.trim_start().len());
            let e = r.start + run.trim_end().len();
            let line_start = t[..s].trim_end_matches([' ', '\t']).bytes().last().is_none_or(|c| c == b'\n');
            let line_end = t[e..].trim_start_matches([' ', '\t', '\r']).bytes().next().is_none_or(|c| c == b'\n');
            if !line_start || !line_end || s >= e {
                continue;
            }
            let ws: Vec<&str> = t[s..e].split(' ').collect();
            if !(2..=3).contains(&ws.len())
                || !ws.iter().all(|w| w.len() >= 2 && w.bytes().all(|c| c.is_ascii_uppercase()))
            {
                continue;
            }
            let (first, last) = (ws[0], ws[ws.len() - 1]);
            if self.names.is_given(first)
                && !Names::is_ambiguous_given(first)
                && self.names.is_surname(last)
                && Self::clean_words(&ws)
            {
                out.push(finding(EntityKind::Person, s, e, 0.65, &["capitals-line", "name-list"]));
            }
        }
    }
}

/// Values of fields and columns that hold a person's name: `first_name`/`last_name` columns
/// in CSV, Markdown tables and SQL `INSERT`s, column lists (`"given": ["Ana"]`) and JSON or
/// YAML fields (`"family": "Haddad"`, FHIR's `family`/`given`). The column says what the value
/// is, so the name lists are not needed; the value must still look like a name (capitalised
/// words of letters, `-`, `'` and initials) and not an organisation or a place.
struct NameColumn {
    column: Regex,
    /// ISO 20022 (SEPA XML, camt statements) name elements: `<Cdtr><Nm>…</Nm>`.
    party: Regex,
}

/// Company legal forms that end an organisation's name ("Nordlys Bygg AS", "Müller GmbH").
#[rustfmt::skip]
const LEGAL_FORMS: &[&str] = &[
    "AS", "ASA", "AB", "Oy", "Oyj", "ApS", "A/S", "GmbH", "AG", "KG", "OHG", "BV", "NV", "SA", "SAS", "SARL", "SL",
    "SpA", "Srl", "SE", "Ltd", "LLC", "LLP", "Inc", "Corp", "PLC", "Plc", "plc", "Pty", "Co", "KK", "Sp", "SRL",
];

/// ISO 20022 party elements whose `<Nm>` is a person's or an organisation's name (creditor,
/// debtor, ultimate parties, a related party of a statement entry).
const ISO20022_PARTIES: &[&str] = &["<Cdtr>", "<Dbtr>", "<UltmtCdtr>", "<UltmtDbtr>", "<Pty>"];

/// Column and field names for a person's name, lower case without `_`; a name that ends with
/// one of them (`billing_last_name`, `patientFirstName`) counts too.
const NAME_COLUMNS: &[&str] = &[
    "firstname",
    "lastname",
    "givenname",
    "givennames",
    "familyname",
    "surname",
    "middlename",
    "fullname",
    "forename",
    "forenames",
    "patientname",
    "customername",
    "employeename",
    "contactname",
    "holdername",
];

impl NameColumn {
    /// The identifier (letters, digits, `_`) around a match of "name" at `at..end`, if it
    /// is a name column: its span.
    fn column_at(t: &str, at: usize, end: usize) -> Option<(usize, usize)> {
        let b = t.as_bytes();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let start = b[..at].iter().rposition(|&c| !ident(c)).map_or(0, |i| i + 1);
        let stop = b[end..].iter().position(|&c| !ident(c)).map_or(b.len(), |i| end + i);
        let mut key = [0u8; 48];
        let mut n = 0;
        for &c in b[start..stop].iter().filter(|&&c| c != b'_') {
            *key.get_mut(n)? = c.to_ascii_lowercase();
            n += 1;
        }
        let key = &key[..n];
        NAME_COLUMNS.iter().any(|c| key.ends_with(c.as_bytes())).then_some((start, stop))
    }

    fn name_like(cell: &str) -> bool {
        let ws: Vec<&str> = cell.split(' ').collect();
        !cell.is_empty()
            && cell.len() <= 60
            && ws.len() <= 4
            && ws.iter().all(|w| {
                w.chars().next().is_some_and(char::is_uppercase)
                    && w.chars().all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '’' | '.'))
            })
            && Layout::clean_words(&ws)
            && !ws.last().is_some_and(|w| LEGAL_FORMS.contains(&w.trim_end_matches('.')))
    }

    /// The quoted scalar after a `"key": ` field, if there is one.
    fn scalar(t: &str, key_end: usize) -> Option<(usize, usize)> {
        let rest = t[key_end..].trim_start_matches(['"', '\'']).trim_start_matches([' ', '\t']);
        let rest = rest.strip_prefix(':')?.trim_start_matches([' ', '\t']);
        let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
        let start = t.len() - rest.len() + 1;
        let len = t[start..].find([quote, '\n'])?;
        (t[start + len..].starts_with(quote)).then_some((start, start + len))
    }
}

impl Recognizer for NameColumn {
    fn name(&self) -> &'static str {
        "person-column"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Person]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r#"(?i)(?:first_?name|last_?name|given_?names?|family_?name|sur_?name|middle_?name|full_?name|fore_?names?|patient_?name|customer_?name|employee_?name|contact_?name|holder_?name|"family"|"given")"#,
            "<Nm>",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        let mut searched = 0;
        for c in self.column.find_iter(t) {
            if c.start() < searched {
                continue;
            }
            let quoted_key = c.as_str().starts_with('"');
            let (start, end) = if quoted_key {
                (c.start(), c.end())
            } else {
                let Some(span) = Self::column_at(t, c.start(), c.end()) else { continue };
                span
            };
            searched = end;
            let cells = match Self::scalar(t, end) {
                Some(span) => vec![span],
                // `"family"`/`"given"` are only fields (a column of that name is rare).
                None if quoted_key => crate::table::column_cells(t, start + 1, end - 1),
                None => crate::table::column_cells(t, start, end),
            };
            for (s, e) in cells {
                if Self::name_like(&t[s..e]) {
                    out.push(finding(EntityKind::Person, s, e, 0.75, &["name-column"]));
                }
            }
        }
        // `<Cdtr><Nm>Anna Berg</Nm>`: the name of a party that is a person (an organisation's
        // name has an organisation word or is not shaped like a name).
        for m in self.party.find_iter(t) {
            let lead = before(t, m.start(), 48).trim_end();
            if !ISO20022_PARTIES.iter().any(|p| lead.ends_with(p)) {
                continue;
            }
            let Some(len) = t[m.end()..].find("</Nm>") else { continue };
            let (s, e) = (m.end(), m.end() + len);
            if len <= 70 && Self::name_like(&t[s..e]) {
                out.push(finding(EntityKind::Person, s, e, 0.75, &["iso20022-party-name"]));
            }
        }
    }
}

/// Calls `f` with `word` lower-cased.
fn with_lower(word: &str, f: impl FnOnce(&str) -> bool) -> bool {
    f(&word.to_lowercase())
}

impl Recognizer for Layout {
    fn name(&self) -> &'static str {
        "person-layout"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Person]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r"(?m)^(?:\*\*)?[A-Z][A-Za-z'\-]+(?:[ ][A-Z][A-Za-z'\-]*){0,2}(?:\*\*)?:[ \t]",
            r"(?m)^[ \t]*\[[0-9/.,: \-]*[0-9]:[0-9]",
            r"(?m)^[0-9]{1,4}[/.\-][0-9]{1,2}[/.\-][0-9]{2,4},?[ \t]+[0-9]{1,2}:[0-9]{2}",
            r"(?m)^[0-9]{1,2}:[0-9]{2}",
            r"(?m)^[A-Z][A-Za-z'\-]+(?:[ ][A-Z][A-Za-z'\-]*){0,2},?[ \t]+\[?[0-9]{1,2}:[0-9]{2}",
            r"[A-Z][A-Za-z'\-]+,[ ][A-Z][a-z]",
            r"[A-Z]{2}/[A-Z]{2}",
            r"(?m)^[ \t]*[A-Z]{2,}[ ][A-Z]{2,}(?:[ ][A-Z]{2,})?[ \t]*\r?$",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        self.speakers(t, out);
        self.inverted(t, out);
        self.passenger(t, out);
        self.capital_lines(text, out);
    }
}
