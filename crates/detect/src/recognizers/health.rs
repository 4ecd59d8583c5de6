//! Health and identity facts that are only sensitive in context: DATE_OF_BIRTH (a date after
//! "DOB"/"born"…), MEDICAL_RECORD_NUMBER (an ID after "MRN"/"patient ID"…) and
//! MEDICAL_CONDITION (ICD-10 codes and condition names next to clinical words).

use perimeter_types::EntityKind;
use regex::Regex;

use super::{byte_at, compile, finding};
use crate::context::{after, before, find_word, near, WINDOW};
use crate::scope::find_in_runs;
use crate::{DetectError, Finding, NormalizedText, Recognizer};

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    let month = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";
    let date = format!(
        r"(?i)\b(?:[0-9]{{1,2}}[/.\-][0-9]{{1,2}}[/.\-](?:[0-9]{{4}}|[0-9]{{2}})|[0-9]{{4}}[/.\-][0-9]{{1,2}}[/.\-][0-9]{{1,2}}|[0-9]{{1,2}}(?:st|nd|rd|th)?[ \t\-]+(?:of[ \t]+)?{month}\.?,?[ \t\-]+[0-9]{{4}}|{month}\.?[ \t]+[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ \t]+[0-9]{{4}})\b"
    );
    all.push(Box::new(DateOfBirth {
        keyword: compile(
            "date-of-birth",
            r"(?i)\b(?:d\.?o\.?b\b\.?|date[ \t]+of[ \t]+birth|birth[ \t]*date|birthday|born(?:[ \t]+on)?)",
        )?,
        date: compile("date-of-birth", &date)?,
    }));
    all.push(Box::new(MedicalRecordNumber {
        keyword: compile(
            "medical-record-number",
            r"(?i)\b(?:mrn\b|medical[ \t]+record(?:[ \t]+(?:(?:number|num|no)\b\.?|#))?|hosp(?:ital)?\.?[ \t]+(?:(?:number|num|no)\b\.?|#)|patient[ \t]*(?:(?:id|number|num|no)\b\.?|#)|health[ \t]+record[ \t]+number\b)",
        )?,
        token: compile("medical-record-number", r"\b[A-Za-z0-9][A-Za-z0-9\-/]{2,19}\b")?,
    }));
    all.push(Box::new(MedicalCondition {
        icd: compile("medical-condition", r"\b[A-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?\b")?,
        names: compile("medical-condition", CONDITIONS)?,
    }));
    Ok(())
}

struct DateOfBirth {
    keyword: Regex,
    date: Regex,
}

/// Digit groups of a date are a plausible day, month and year.
fn plausible_date(s: &str) -> bool {
    let groups: Vec<&str> = s.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let num = |g: &str| g.parse::<u32>().unwrap_or(0);
    let year_ok = |g: &str| g.len() == 2 || (g.len() == 4 && (1900..=2100).contains(&num(g)));
    let day = 1..=31;
    let month = 1..=12;
    if s.bytes().any(|b| b.is_ascii_alphabetic()) {
        // "12 March 1984", "March 12th, 1984": the ordinal suffix adds no group.
        return matches!(groups.as_slice(), [d, y] if day.contains(&num(d)) && y.len() == 4 && year_ok(y));
    }
    match groups.as_slice() {
        [y, m, d] if y.len() == 4 => year_ok(y) && month.contains(&num(m)) && day.contains(&num(d)),
        [a, b, y] => {
            let (a, b) = (num(a), num(b));
            year_ok(y) && ((day.contains(&a) && month.contains(&b)) || (month.contains(&a) && day.contains(&b)))
        }
        _ => false,
    }
}

impl Recognizer for DateOfBirth {
    fn name(&self) -> &'static str {
        "date-of-birth"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::DateOfBirth]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"(?i)\b(?:d\.?o\.?b|birth|born)"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for k in self.keyword.find_iter(t) {
            // A date starting within ~30 bytes after the keyword.
            let window = after(t, k.end(), 56);
            let Some(m) = self.date.find(window) else { continue };
            let (start, end) = (k.end() + m.start(), k.end() + m.end());
            let whole = byte_at(t, end).is_none_or(|b| !b.is_ascii_alphanumeric());
            if m.start() <= 30 && whole && plausible_date(m.as_str()) {
                out.push(finding(EntityKind::DateOfBirth, start, end, 0.85, &["context:dob"]));
            }
        }
    }
}

struct MedicalRecordNumber {
    keyword: Regex,
    token: Regex,
}

impl Recognizer for MedicalRecordNumber {
    fn name(&self) -> &'static str {
        "medical-record-number"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::MedicalRecordNumber]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r"(?i)\b(?:mrn|medical[ \t]+record|hosp(?:ital)?\.?[ \t]+(?:number|num|no)|patient[ \t]*(?:id|number|num|no|#)|health[ \t]+record)",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for k in self.keyword.find_iter(t) {
            // The first token with at least two digits, starting within ~30 bytes.
            let window = after(t, k.end(), 56);
            let whole = |end: usize| byte_at(t, k.end() + end).is_none_or(|b| !b.is_ascii_alphanumeric());
            let hit = self.token.find_iter(window).take_while(|m| m.start() <= 30).find(|m| {
                let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
                digits >= 2 && m.as_str().len() >= 4 && whole(m.end())
            });
            if let Some(m) = hit {
                let (start, end) = (k.end() + m.start(), k.end() + m.end());
                out.push(finding(EntityKind::MedicalRecordNumber, start, end, 0.8, &["context:mrn"]));
            }
        }
    }
}

/// Condition names that are sensitive when said of a person. Upper-case acronyms stay
/// case-sensitive where the lower-case form is a word ("aids").
const CONDITIONS: &str = r"\b(?:AIDS|GERD|GORD|COPD|(?i:type[ \t]+[12][ \t]+diabetes(?:[ \t]+mellitus)?|diabetes(?:[ \t]+mellitus)?|hypertension|asthma|hiv|cancer|(?:(?:invasive|metastatic)[ \t]+)?(?:(?:ductal|lobular|squamous[ \t]+cell|basal[ \t]+cell|hepatocellular|renal[ \t]+cell|small[ \t]+cell)[ \t]+)?carcinoma|(?:postnatal|postpartum|major|clinical)[ \t]+depression|depression|epilepsy|dementia|alzheimer'?s(?:[ \t]+disease)?|parkinson'?s(?:[ \t]+disease)?|schizophrenia|bipolar(?:[ \t]+disorder)?|hepatitis(?:[ \t]+[abc])?|tuberculosis|leuka?emia|lymphoma|melanoma|multiple[ \t]+sclerosis|heart[ \t]+failure(?:[ \t]+with[ \t]+(?:reduced|preserved|mildly[ \t]+reduced)[ \t]+ejection[ \t]+fraction)?|chronic[ \t]+kidney[ \t]+disease(?:[ \t]+stage[ \t]+[1-5][ab]?)?|(?:coronary[ \t]+artery|coronary[ \t]+heart|heart|kidney|liver|coeliac|celiac|motor[ \t]+neuron[e]?|crohn'?s)[ \t]+disease|gastro-?o?esophageal[ \t]+reflux(?:[ \t]+disease)?|cystic[ \t]+fibrosis|crohn'?s|ulcerative[ \t]+colitis|psoriasis|rheumatoid[ \t]+arthritis|osteoarthritis|arthritis|osteoporosis|anorexia(?:[ \t]+nervosa)?|bulimia(?:[ \t]+nervosa)?|eating[ \t]+disorder|ptsd|(?:generali[sz]ed[ \t]+)?anxiety[ \t]+disorder|panic[ \t]+disorder|obsessive[ \t]+compulsive[ \t]+disorder|ocd|personality[ \t]+disorder|psychosis|autism|adhd|stroke|obesity|cirrhosis|sickle[ \t]+cell(?:[ \t]+(?:disease|ana?emia))?|ana?emia|covid-19|(?:(?:community|hospital)[ \t-]+acquired[ \t]+|aspiration[ \t]+)?pneumonia|sepsis|angina|atrial[ \t]+fibrillation|myocardial[ \t]+infarction|glaucoma|lupus|migraine|hyperlipida?emia|hypercholesterola?emia|hypothyroidism|hyperthyroidism|eczema|gout|(?:obstructive[ \t]+)?sleep[ \t]+apno?ea|alcoholism|alcohol[ \t]+dependence|opioid[ \t]+dependence|substance[ \t]+(?:use|misuse|abuse)[ \t]+disorder|learning[ \t]+disabilit(?:y|ies)|down[ \t]+syndrome|cerebral[ \t]+palsy|fibromyalgia|chronic[ \t]+fatigue[ \t]+syndrome|irritable[ \t]+bowel[ \t]+syndrome))\b";

/// Words that make a code or condition name clinical.
#[rustfmt::skip]
const CLINICAL_WORDS: &[&str] = &[
    "diagnosis", "diagnosed", "diagnoses", "icd", "icd-10", "icd10", "clinical", "condition", "conditions",
    "history of", "dx", "patient", "patients", "problem list", "comorbidities", "comorbidity", "suffers from",
    "suffering from", "treated for", "treatment for", "medical history", "pmh", "prescribed", "symptoms", "admitted",
    "living with", "admission", "admissions", "exacerbation", "inhaler", "medication", "treatment", "referral",
    "clinic", "gp", "nurse",
];

struct MedicalCondition {
    icd: Regex,
    names: Regex,
}

impl Recognizer for MedicalCondition {
    fn name(&self) -> &'static str {
        "medical-condition"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::MedicalCondition]
    }
    fn triggers(&self) -> &[&'static str] {
        // A code or a condition name must be there; the context words around it are checked
        // per match.
        &[r"\b[A-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?\b", CONDITIONS]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        let icds: Vec<(usize, usize)> =
            find_in_runs(&self.icd, t, &text.runs().upper, 3, |r| r.capital_digit && r.digits >= 2)
                .map(|m| (m.start(), m.end()))
                .collect();
        let names: Vec<(usize, usize)> = self.names.find_iter(t).map(|m| (m.start(), m.end())).collect();
        // A code next to a condition name ("E11.9 | Type 2 diabetes") supports both.
        for &(start, end) in &icds {
            // "vitamin B12", "omega-3" style names are not codes.
            if find_word(before(t, start, 12), &["vitamin"]).is_some() {
                continue;
            }
            let (score, evidence) = if near(t, start, end, CLINICAL_WORDS) {
                (0.8, "context:clinical")
            } else if within_window(&names, start, end) {
                (0.75, "context:condition")
            } else if t[start..end].contains('.') && near(t, start, end, &["code", "codes"]) {
                // "code" alone is weak ("u64 type code"): only the dotted form (E11.9) passes.
                (0.6, "context:code")
            } else {
                continue;
            };
            out.push(finding(EntityKind::MedicalCondition, start, end, score, &["icd10-format", evidence]));
        }
        // A list of conditions shares its context: "diagnosed with asthma, COPD and heart failure".
        let mut last_kept: Option<usize> = None;
        for &(start, end) in &names {
            let evidence = if near(t, start, end, CLINICAL_WORDS) {
                "context:clinical"
            } else if within_window(&icds, start, end) {
                "context:icd10"
            } else if last_kept.is_some_and(|e| start < e + WINDOW) {
                "context:condition-list"
            } else {
                continue;
            };
            last_kept = Some(end);
            out.push(finding(EntityKind::MedicalCondition, start, end, 0.7, &["condition-list", evidence]));
        }
    }
}

/// One of the sorted, disjoint `spans` lies within [`WINDOW`] bytes of `start..end`.
fn within_window(spans: &[(usize, usize)], start: usize, end: usize) -> bool {
    let i = spans.partition_point(|&(_, e)| e + WINDOW <= start);
    spans[i..].iter().take_while(|&&(s, _)| s < end + WINDOW).any(|&(s, e)| (s, e) != (start, end))
}
