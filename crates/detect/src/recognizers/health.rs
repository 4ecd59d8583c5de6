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
    // Month names in the languages whose date-of-birth cues are below (French, German, Dutch,
    // Spanish, Italian, Portuguese, Polish genitive, Swedish), written day first ("3 avril
    // 1991", "12. März 1984", "3 de mayo de 1958"). Non-ASCII letters are matched in the case
    // they are written in (the patterns are compiled without Unicode case folding).
    let foreign_month = r"(?:janvier|f(?:é|e)vrier|mars|avril|mai|juin|juillet|ao(?:û|u)t|septembre|octobre|novembre|d(?:é|e)cembre|januar|februar|m(?:ä|a)rz|april|juni|juli|oktober|dezember|januari|februari|maart|mei|augustus|augusti|maj|enero|febrero|marzo|abril|mayo|junio|julio|agosto|se?ptiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|janeiro|fevereiro|mar(?:ç|c)o|maio|junho|julho|setembro|outubro|novembro|dezembro|stycznia|lutego|marca|kwietnia|maja|czerwca|lipca|sierpnia|wrze(?:ś|s)nia|pa(?:ź|z)dziernika|listopada|grudnia)";
    let date = format!(
        r"(?i)\b(?:[0-9]{{1,2}}[/.\-][0-9]{{1,2}}[/.\-](?:[0-9]{{4}}|[0-9]{{2}})|[0-9]{{4}}[/.\-][0-9]{{1,2}}[/.\-][0-9]{{1,2}}|[0-9]{{1,2}}(?:st|nd|rd|th)?[ \t\-]+(?:of[ \t]+)?{month}\.?,?[ \t\-]+[0-9]{{4}}|{month}\.?[ \t]+[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ \t]+[0-9]{{4}}|[0-9]{{1,2}}(?:er|\.)?[ \t]+(?:de[ \t]+)?{foreign_month}[ \t]+(?:de[ \t]+)?[0-9]{{4}}|[0-9]{{2}}(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[0-9]{{4}})\b"
    );
    all.push(Box::new(DateOfBirth {
        keyword: compile(
            "date-of-birth",
            r"(?i)\b(?:d\.?o\.?b\b\.?|date[ \t]+of[ \t]+birth|birth[ \t]*date|birthday|born(?:[ \t]+on)?)",
        )?,
        // Other languages, each word in the cases it is written in: a case-insensitive list of
        // long words has too many spellings for the regex's literal prefilter (10x slower).
        foreign: compile(
            "date-of-birth",
            r"\b(?:[Gg]eb\.|[Gg]eboren(?:[ \t]+(?:am|op))?|[Gg]eburtsdatum|GEBURTSDATUM|[Nn](?:ée|é|ee)[ \t]+le|[Dd]ate[ \t]+de[ \t]+naissance|DATE[ \t]+DE[ \t]+NAISSANCE|[Ff]echa[ \t]+de[ \t]+nacimiento|FECHA[ \t]+DE[ \t]+NACIMIENTO|[Nn]acid[oa][ \t]+el|[Dd]ata[ \t]+urodzenia|DATA[ \t]+URODZENIA|[Uu]rodzon[ya](?:[ \t]+dnia)?|[Gg]eboortedatum|[Dd]ata[ \t]+di[ \t]+nascita|[Nn]at[oa][ \t]+il|[Dd]ata[ \t]+de[ \t]+nascimento|[Nn]ascid[oa][ \t]+em|[Ff]ödelsedatum|FÖDELSEDATUM|[Ff]ödd(?:[ \t]+den)?)[ \t]*:?",
        )?,
        column: compile(
            "date-of-birth",
            r"(?i)(?:dob|date_of_birth|dateofbirth|birth_?date|date[ _]of[ _]birth|fecha_?(?:de_)?nacimiento|geburtsdatum|data_urodzenia|geboortedatum|date_?de_?naissance|data_?(?:di_)?nascita)\b",
        )?,
        date: compile("date-of-birth", &date)?,
    }));
    all.push(Box::new(MedicalRecordNumber {
        keyword: compile(
            "medical-record-number",
            r"(?i)\b(?:mrn\b|medical[ \t]+record(?:[ \t]+(?:(?:number|num|no)\b\.?|#))?|hosp(?:ital)?\.?[ \t]+(?:(?:number|num|no)\b\.?|#)|patient[ \t]*(?:(?:id|number|num|no)\b\.?|#)|health[ \t]+record[ \t]+number\b)",
        )?,
        // Labels in other languages (kept apart: joined to the English ones, the alternation
        // loses its literal prefilter and is 20x slower).
        foreign: compile(
            "medical-record-number",
            r"(?i)\b(?:ipp|pat\.-id|patid|patienten-?(?:id|nr)|historii[ \t]+choroby|historia[ \t]+cl(?:í|i)nica|nhc|dossier(?:[ \t]+m(?:é|e)dical)?|fallnummer)\b\.?",
        )?,
        // More labels (other languages, and English ones added later), case-sensitive (lower
        // case and capitalised): joined to the lists above under `(?i)` they multiply their
        // literals past what the fast literal search takes (three times slower on prose).
        foreign2: compile(
            "medical-record-number",
            r"\b(?:[Pp]ati(?:ë|e)ntnummer|[Cc]artella[ \t]+clinica(?:[ \t]+n\.)?|[Nn]osologico|[Pp]rocesso[ \t]+cl(?:í|i)nico|[Nn]umer[ \t]+pacjenta|[Kk]sięgi[ \t]+głównej|[Cc]linic[ \t]+(?:number|no)\b\.?|[Uu]nit[ \t]+number|[Hh]ospital[ \t]+(?:ID|id)|de[ \t]processo)\b\.?",
        )?,
        column: compile(
            "medical-record-number",
            r"(?i)(?:patient_?id|patient_?number|mrn|medical_record_(?:number|no)|hospital_(?:number|no)|nhc)\b",
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
    foreign: Regex,
    column: Regex,
    date: Regex,
}

/// Where a column name matched at `at` starts: at `at` after a non-letter, or at the start of
/// a snake_case prefix (`patient_dob`); `None` inside a word (`kdob`).
pub(super) fn column_start(t: &str, at: usize) -> Option<usize> {
    let b = t.as_bytes();
    match at.checked_sub(1).map(|i| b[i]) {
        None => Some(at),
        Some(b'_') => {
            Some(b[..at].iter().rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_')).map_or(0, |i| i + 1))
        }
        Some(c) if c.is_ascii_alphanumeric() => None,
        Some(_) => Some(at),
    }
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
        &[
            r"(?i)(?:\b|_)(?:d\.?o\.?b|birth|born)",
            r"(?i)\b(?:geb\.|geboren|geburtsdatum|naissance|nacimiento|nacid[oa]|urodzenia|urodzon|geboortedatum|nascita|nascimento|nascid[oa]|nat[oa][ \t]+il|nee[ \t]+le)",
            "née le|né le|[Ff]ödelsedatum|FÖDELSEDATUM|[Ff]ödd",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for k in self.keyword.find_iter(t).chain(self.foreign.find_iter(t)) {
            // A date starting within ~30 bytes after the keyword.
            let window = after(t, k.end(), 56);
            let Some(m) = self.date.find(window) else { continue };
            let (start, end) = (k.end() + m.start(), k.end() + m.end());
            let whole = byte_at(t, end).is_none_or(|b| !b.is_ascii_alphanumeric());
            if m.start() <= 30 && whole && plausible_date(m.as_str()) {
                out.push(finding(EntityKind::DateOfBirth, start, end, 0.85, &["context:dob"]));
            }
        }
        // Dates in a column named like a date of birth, in a table, SQL or a column list.
        for c in self.column.find_iter(t) {
            let Some(start) = column_start(t, c.start()) else { continue };
            for (s, e) in crate::table::column_cells(t, start, c.end()) {
                let cell = &t[s..e];
                if self.date.find(cell).is_some_and(|m| m.range() == (0..cell.len())) && plausible_date(cell) {
                    out.push(finding(EntityKind::DateOfBirth, s, e, 0.8, &["context:dob-column"]));
                }
            }
        }
    }
}

/// In an HL7 v2 message, a code-shaped value that is not a diagnosis: anything in the MSH
/// header or the EVN segment (the trigger event `A04` of `ADT^A04`), and `I10`/`I9` naming a code system: the
/// third component of a coded element (`|M54.16^Radiculopathy^I10|`) or the diagnosis coding
/// method field DG1-2 (`DG1|1|I10|…`). The code itself (the first component) is a finding.
fn hl7_coding_system(t: &str, start: usize, end: usize) -> bool {
    let b = t.as_bytes();
    // The message header's message type (`MSH|…|ADT^A04|`): trigger events look like codes.
    let seg_start = b[..start].iter().rposition(|&c| c == b'\r' || c == b'\n').map_or(0, |i| i + 1);
    let head = &t[seg_start..start];
    if (head.starts_with("MSH") || head.starts_with("EVN"))
        && b.get(seg_start + 3).is_some_and(|c| c.is_ascii_punctuation())
    {
        return true;
    }
    let next_is_delimiter = b.get(end).is_none_or(|c| matches!(c, b'|' | b'^' | b'~' | b'\r' | b'\n'));
    if !next_is_delimiter || !matches!(&t[start..end], "I10" | "I9" | "I9C" | "I10C") {
        return false;
    }
    match start.checked_sub(1).map(|i| b[i]) {
        Some(b'^') => true,
        Some(b'|') => {
            let seg_start = b[..start].iter().rposition(|&c| c == b'\r' || c == b'\n').map_or(0, |i| i + 1);
            let seg = &t[seg_start..start];
            seg.starts_with("DG1|") && seg.bytes().filter(|&c| c == b'|').count() == 2
        }
        _ => false,
    }
}

/// "de processo" at `at` is the Portuguese record label "N.º de processo" (also "Nº", "N.o"
/// after NFKC, and "número de processo"). Kept out of the label regex: starting with "N", it
/// would give the regex nothing to skip ahead with.
fn process_number_label(t: &str, at: usize) -> bool {
    let lead = t[..at].trim_end_matches([' ', '\t']);
    ["N.º", "Nº", "N.o", "No", "N.", "número", "numero", "Número", "Numero", "n.º", "nº", "n.o"].iter().any(|p| {
        lead.ends_with(p) && lead[..lead.len() - p.len()].chars().next_back().is_none_or(|c| !c.is_alphanumeric())
    })
}

struct MedicalRecordNumber {
    keyword: Regex,
    foreign: Regex,
    foreign2: Regex,
    column: Regex,
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
            r"(?i)\b(?:mrn|medical[ \t]+record|hosp(?:ital)?\.?[ \t]+(?:number|num|no|id)|patient[ \t]*(?:id|number|num|no|#)|health[ \t]+record|clinic[ \t]+(?:number|no)|unit[ \t]+number)",
            r"(?i)\b(?:(?-i:IPP|NHC)|pat\.-id|patid|patienten-?(?:id|nr)|historii[ \t]+choroby|historia[ \t]+cl|dossier|fallnummer|pati(?:ë|e)ntnummer|cartella[ \t]+clinica|nosologico|processo|numer[ \t]+pacjenta|ksi(?:ę|e)gi[ \t]+g)",
            r"(?i)(?:patient_?(?:id|number)|medical_record|hospital_(?:number|no))",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        // "de processo" only after "N.º" or "número" ([`process_number_label`]).
        let labels = self
            .keyword
            .find_iter(t)
            .chain(self.foreign.find_iter(t))
            .chain(
                self.foreign2
                    .find_iter(t)
                    .filter(|k| !k.as_str().starts_with("de") || process_number_label(t, k.start())),
            )
            .map(|k| k.end());
        for k_end in labels {
            // The first token with at least two digits, starting within ~30 bytes.
            let window = after(t, k_end, 56);
            let whole = |end: usize| byte_at(t, k_end + end).is_none_or(|b| !b.is_ascii_alphanumeric());
            let hit = self.token.find_iter(window).take_while(|m| m.start() <= 30).find(|m| {
                let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
                digits >= 2 && m.as_str().len() >= 4 && whole(m.end())
            });
            if let Some(m) = hit {
                let (start, end) = (k_end + m.start(), k_end + m.end());
                out.push(finding(EntityKind::MedicalRecordNumber, start, end, 0.8, &["context:mrn"]));
            }
        }
        // Identifiers in a `patient_id`/`mrn` column: a short prefix and digits ("MRN004412").
        for c in self.column.find_iter(t) {
            let Some(start) = column_start(t, c.start()) else { continue };
            for (s, e) in crate::table::column_cells(t, start, c.end()) {
                let cell = &t.as_bytes()[s..e];
                let letters = cell.iter().take_while(|b| b.is_ascii_uppercase()).count();
                let rest = cell[letters..].strip_prefix(b"-").unwrap_or(&cell[letters..]);
                if letters <= 4 && (4..=12).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit) {
                    out.push(finding(EntityKind::MedicalRecordNumber, s, e, 0.75, &["context:mrn-column"]));
                }
            }
        }
    }
}

/// Condition names that are sensitive when said of a person. Upper-case acronyms stay
/// case-sensitive where the lower-case form is a word ("aids").
const CONDITIONS: &str = r"\b(?:AIDS|GERD|GORD|COPD|CKD|UTI|DVT|DKA|TIA|AKI|IBS|PCOS|MRSA|EPOC|POChP|(?i:urinary[ \t]+tract[ \t]+infection|(?:recurrent|major|moderate|severe|mild)[ \t]+depressive[ \t]+(?:disorder|episode)|depressive[ \t]+(?:disorder|episode)|(?:(?:caecal|cecal|colonic|colorectal|rectal|gastric|oesophageal|esophageal|pancreatic|prostate|prostatic|lung|pulmonary|endometrial|ovarian|renal)[ \t]+)?adenocarcinoma|(?:breast|lung|prostate|bowel|colorectal|colon|ovarian|cervical|pancreatic|skin|bladder|stomach|liver|kidney|testicular|thyroid|oesophageal|esophageal)[ \t]+cancer|diabetic[ \t]+(?:ketoacidosis|retinopathy|nephropathy|neuropathy|foot[ \t]+ulcer)|gestational[ \t]+diabetes|pre-?diabetes|cellulitis|sinusitis|bronchitis|bronchiolitis|bronchiectasis|emphysema|pulmonary[ \t]+(?:fibrosis|embolism|hypertension)|gastroenteritis|appendicitis|cholecystitis|pancreatitis|diverticulitis|diverticular[ \t]+disease|meningitis|encephalitis|osteomyelitis|endocarditis|pyelonephritis|tonsillitis|otitis[ \t]+media|influenza|shingles|herpes[ \t]+zoster|chlamydia|gonorrho?ea|syphilis|malaria|lyme[ \t]+disease|sarcoma|myeloma|glioblastoma|glioma|mesothelioma|thrombocytopenia|ha?emophilia|thalassa?emia|deep[ \t]+vein[ \t]+thrombosis|cardiomyopathy|aortic[ \t]+stenosis|heart[ \t]+attack|aneurysm|transient[ \t]+isch(?:a)?emic[ \t]+attack|peripheral[ \t]+(?:arterial|vascular)[ \t]+disease|(?:peripheral[ \t]+)?neuropathy|cushing'?s[ \t]+(?:syndrome|disease)|addison'?s[ \t]+disease|polycystic[ \t]+ovary[ \t]+syndrome|endometriosis|infertility|erectile[ \t]+dysfunction|pre-?eclampsia|miscarriage|ectopic[ \t]+pregnancy|insomnia|self-harm|suicidal[ \t]+ideation|schizoaffective[ \t]+disorder|(?:borderline|antisocial)[ \t]+personality[ \t]+disorder|tourette'?s?(?:[ \t]+syndrome)?|bell'?s[ \t]+palsy|trigeminal[ \t]+neuralgia|carpal[ \t]+tunnel[ \t]+syndrome|concussion|traumatic[ \t]+brain[ \t]+injury|spinal[ \t]+cord[ \t]+injury|macular[ \t]+degeneration|cataracts?|tinnitus|gastritis|peptic[ \t]+ulcer(?:[ \t]+disease)?|hiatus[ \t]+hernia|gallstones|(?:non-alcoholic[ \t]+)?fatty[ \t]+liver(?:[ \t]+disease)?|dermatitis|rosacea|urticaria|vitiligo|ankylosing[ \t]+spondylitis|frozen[ \t]+shoulder|sciatica|scoliosis|whiplash(?:[ \t]+injury)?|tendini?tis|(?:herniated|slipped|prolapsed)[ \t]+disc|kidney[ \t]+stones|renal[ \t]+failure|acute[ \t]+kidney[ \t]+injury|urinary[ \t]+incontinence|benign[ \t]+prostatic[ \t]+hyperplasia|spina[ \t]+bifida|congenital[ \t]+heart[ \t]+disease|(?:peanut|tree[ \t]+nut|nut|penicillin|latex|shellfish|egg|milk|sesame|bee[ \t]+sting|wasp[ \t]+sting)[ \t]+allergy|anaphylaxis|asthme|diabète(?:[ \t]+de[ \t]+type[ \t]+[12])?|hypertension[ \t]+artérielle|insuffisance[ \t]+(?:cardiaque|rénale(?:[ \t]+chronique)?|respiratoire)|infarctus(?:[ \t]+du[ \t]+myocarde)?|fibrillation[ \t]+auriculaire|pneumonie|dépression|bronchite|accident[ \t]+vasculaire[ \t]+cérébral|cirrhose|maladie[ \t]+(?:d'alzheimer|de[ \t]+parkinson|de[ \t]+crohn|cœliaque|coeliaque)|sclérose[ \t]+en[ \t]+plaques|polyarthrite[ \t]+rhumatoïde|arthrose|hypothyroïdie|cancer[ \t]+du[ \t]+(?:sein|poumon|côlon|colon|pancréas|foie)|asthma[ \t]+bronchiale|(?:arterielle[ \t]+)?hypertonie|(?:akuter[ \t]+)?myokardinfarkt|herzinfarkt|herzinsuffizienz|vorhofflimmern|pneumonie|lungenentzündung|epilepsie|schlaganfall|niereninsuffizienz|leberzirrhose|morbus[ \t]+(?:crohn|parkinson|alzheimer)|multiple[ \t]+sklerose|demenz|brustkrebs|lungenkrebs|darmkrebs|hypothyreose|migräne|gicht|rheumatoide[ \t]+arthritis|diabetes[ \t]+mellitus[ \t]+typ[ \t]+[12]|asma|hipertensión(?:[ \t]+arterial)?|insuficiencia[ \t]+(?:cardíaca|cardiaca|renal(?:[ \t]+crónica)?)|infarto(?:[ \t]+agudo)?[ \t]+de[ \t]+miocardio|fibrilación[ \t]+auricular|neumonía|depresión|epilepsia|ictus|accidente[ \t]+cerebrovascular|cirrosis|cáncer[ \t]+de[ \t]+(?:mama|pulmón|colon|próstata|páncreas)|enfermedad[ \t]+de[ \t]+(?:alzheimer|parkinson|crohn)|esclerosis[ \t]+múltiple|artritis[ \t]+reumatoide|artrosis|hipotiroidismo|bronquitis|migraña|diabetes[ \t]+(?:mellitus[ \t]+)?tipo[ \t]+[12]|astma|cukrzyca(?:[ \t]+typu[ \t]+[12])?|nadciśnienie(?:[ \t]+tętnicze)?|niewydolność[ \t]+(?:serca|nerek)|zawał[ \t]+(?:mięśnia[ \t]+sercowego|serca)|migotanie[ \t]+przedsionków|zapalenie[ \t]+płuc|depresja|padaczka|udar(?:[ \t]+mózgu)?|marskość[ \t]+wątroby|stwardnienie[ \t]+rozsiane|reumatoidalne[ \t]+zapalenie[ \t]+stawów|niedoczynność[ \t]+tarczycy|dna[ \t]+moczanowa|migrena|rak[ \t]+(?:piersi|płuca|jelita[ \t]+grubego|prostaty)|type[ \t]+[12][ \t]+diabetes(?:[ \t]+mellitus)?|diabetes(?:[ \t]+mellitus)?|hypertension|asthma|hiv|cancer|(?:(?:invasive|metastatic)[ \t]+)?(?:(?:ductal|lobular|squamous[ \t]+cell|basal[ \t]+cell|hepatocellular|renal[ \t]+cell|small[ \t]+cell)[ \t]+)?carcinoma|(?:postnatal|postpartum|major|clinical)[ \t]+depression|depression|epilepsy|dementia|alzheimer'?s(?:[ \t]+disease)?|parkinson'?s(?:[ \t]+disease)?|schizophrenia|bipolar(?:[ \t]+disorder)?|hepatitis(?:[ \t]+[abc])?|tuberculosis|leuka?emia|lymphoma|melanoma|multiple[ \t]+sclerosis|heart[ \t]+failure(?:[ \t]+with[ \t]+(?:reduced|preserved|mildly[ \t]+reduced)[ \t]+ejection[ \t]+fraction)?|chronic[ \t]+kidney[ \t]+disease(?:[ \t]+stage[ \t]+[1-5][ab]?)?|(?:coronary[ \t]+artery|coronary[ \t]+heart|heart|kidney|liver|coeliac|celiac|motor[ \t]+neuron[e]?|crohn'?s)[ \t]+disease|gastro-?o?esophageal[ \t]+reflux(?:[ \t]+disease)?|cystic[ \t]+fibrosis|crohn'?s|ulcerative[ \t]+colitis|psoriasis|rheumatoid[ \t]+arthritis|osteoarthritis|arthritis|osteoporosis|anorexia(?:[ \t]+nervosa)?|bulimia(?:[ \t]+nervosa)?|eating[ \t]+disorder|ptsd|(?:generali[sz]ed[ \t]+)?anxiety[ \t]+disorder|panic[ \t]+disorder|obsessive[ \t]+compulsive[ \t]+disorder|ocd|personality[ \t]+disorder|psychosis|autism|adhd|stroke|obesity|cirrhosis|sickle[ \t]+cell(?:[ \t]+(?:disease|ana?emia))?|ana?emia|covid-19|(?:(?:community|hospital)[ \t-]+acquired[ \t]+|aspiration[ \t]+)?pneumonia|sepsis|angina|atrial[ \t]+fibrillation|myocardial[ \t]+infarction|glaucoma|lupus|migraine|hyperlipida?emia|hypercholesterola?emia|hypothyroidism|hyperthyroidism|eczema|gout|(?:obstructive[ \t]+)?sleep[ \t]+apno?ea|alcoholism|alcohol[ \t]+dependence|opioid[ \t]+dependence|substance[ \t]+(?:use|misuse|abuse)[ \t]+disorder|learning[ \t]+disabilit(?:y|ies)|down[ \t]+syndrome|cerebral[ \t]+palsy|fibromyalgia|chronic[ \t]+fatigue[ \t]+syndrome|irritable[ \t]+bowel[ \t]+syndrome))\b";

/// Words that make a code or condition name clinical.
#[rustfmt::skip]
const CLINICAL_WORDS: &[&str] = &[
    "diagnosis", "diagnosed", "diagnoses", "icd", "icd-10", "icd10", "clinical", "condition", "conditions",
    "history of", "dx", "patient", "patients", "problem list", "comorbidities", "comorbidity", "suffers from",
    "suffering from", "treated for", "treatment for", "medical history", "pmh", "prescribed", "symptoms", "admitted",
    "living with", "admission", "admissions", "exacerbation", "inhaler", "medication", "treatment", "referral",
    "clinic", "gp", "nurse", "assessment", "impression", "a/p", "pmhx", "hx", "presenting complaint", "discharge",
    "allergies", "allergic", "allergy", "claim", "injury", "symptom", "ward", "consultant", "physician",
    // French, German, Spanish, Polish.
    "diagnostic", "antécédents", "patiente", "traitement", "diagnose", "diagnosen", "diagnostiziert", "befund",
    "vorerkrankungen", "patientin", "behandlung", "anamnese", "diagnóstico", "antecedentes", "paciente",
    "tratamiento", "rozpoznanie", "pacjent", "pacjentka", "leczenie", "wywiad", "cim-10", "cie-10", "icd-10-gm",
    "dg", "rozp",
];

/// Words that say a code column or field holds diagnoses, from further away (a table header).
const CODE_HEADER_WORDS: &[&str] =
    &["icd", "icd-10", "icd10", "diagnosis code", "diagnosis codes", "dx code", "dx", "cim-10", "cie-10"];

/// Words after a condition name that make it the name of a service, not a diagnosis
/// ("Diabetes Clinic", "Asthma UK").
#[rustfmt::skip]
const SERVICE_WORDS: &[&str] = &[
    "clinic", "clinics", "service", "services", "unit", "team", "department", "dept", "centre", "center", "ward",
    "nurse", "nurses", "specialist", "society", "association", "foundation", "uk", "awareness", "research",
    "programme", "program", "pathway", "network", "charity", "education", "group", "month", "week", "day",
    "screening", "prevention",
];

/// The name is a questionnaire item answered no ("Stroke: No", "Heart disease? N", "[ ] Cancer").
fn answered_no(t: &str, start: usize, end: usize) -> bool {
    let next = after(t, end, 24);
    let next = next.split('\n').next().unwrap_or("");
    let rest = next.trim_start_matches([' ', '\t', ':', '?', '-', '|', '.', '=', '\u{2013}']);
    let answer = rest.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    let separated = rest.len() < next.len();
    let no = separated
        && ["no", "n", "none", "never", "nein", "non", "nie", "nee", "negative", "denied", "denies"]
            .iter()
            .any(|w| answer.eq_ignore_ascii_case(w));
    let prev = before(t, start, 8).trim_end();
    no || prev.ends_with("[ ]") || prev.ends_with('\u{2610}') || prev.ends_with('\u{25A1}')
}

/// A service named after a condition ("Diabetes Clinic", "Paediatric Diabetes Service").
fn service_name(t: &str, end: usize) -> bool {
    let next = after(t, end, 24).trim_start_matches([' ', '\t']);
    let word = next.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    word.chars().next().is_some_and(char::is_uppercase) && SERVICE_WORDS.iter().any(|w| word.eq_ignore_ascii_case(w))
}

/// The line holding `pos` starts with an assessment label ("A:", "A/P:", "Dx:").
fn assessment_line(t: &str, pos: usize) -> bool {
    let ls = t.as_bytes()[..pos].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = t[ls..pos].trim_start_matches([' ', '\t', '-', '*']);
    ["A:", "A/P:", "Dx:", "DX:", "Ddx:", "Imp:"].iter().any(|l| line.starts_with(l))
}

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
        &[r"\b[A-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?\b"]
    }
    fn solo_triggers(&self) -> &[&'static str] {
        &[CONDITIONS]
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
            if hl7_coding_system(t, start, end) {
                continue;
            }
            let (score, evidence) = if near(t, start, end, CLINICAL_WORDS) || assessment_line(t, start) {
                (0.8, "context:clinical")
            } else if t[start..end].contains('.') && find_word(before(t, start, 320), CODE_HEADER_WORDS).is_some() {
                (0.7, "context:code-header")
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
            if service_name(t, end) || answered_no(t, start, end) {
                continue;
            }
            let evidence = if near_in_paragraph(t, start, end, CLINICAL_WORDS) {
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

/// A clinical word within [`WINDOW`] bytes of a condition name, in its own paragraph: a leaflet's
/// "…without needing to see a GP:" followed by a blank line and a list of conditions it
/// treats speaks of no patient.
fn near_in_paragraph(t: &str, start: usize, end: usize, words: &[&'static str]) -> bool {
    let prev = before(t, start, WINDOW);
    let prev = match prev.rfind("\n\n").or_else(|| prev.rfind("\n\r\n")) {
        Some(i) => &prev[i..],
        None => prev,
    };
    let next = after(t, end, WINDOW);
    let next = match next.find("\n\n").or_else(|| next.find("\n\r\n")) {
        Some(i) => &next[..i],
        None => next,
    };
    find_word(prev, words).is_some() || find_word(next, words).is_some()
}

/// One of the sorted, disjoint `spans` lies within [`WINDOW`] bytes of `start..end`.
fn within_window(spans: &[(usize, usize)], start: usize, end: usize) -> bool {
    let i = spans.partition_point(|&(_, e)| e + WINDOW <= start);
    spans[i..].iter().take_while(|&&(s, _)| s < end + WINDOW).any(|&(s, e)| (s, e) != (start, end))
}
