//! The output guard: secrets and PII in an answer that were not in the permitted context are
//! replaced by `[REDACTED:KIND]` before the answer reaches the user, as it streams.

use std::collections::BTreeMap;

use perimeter_detect::{Detector, Finding};
use perimeter_types::EntityKind;

/// What replaces a value the guard keeps from the user: `[REDACTED:` + the kind's canonical
/// name + `]`, e.g. `[REDACTED:CREDIT_CARD]`. Square brackets, so it cannot be mistaken for a
/// pseudonymisation placeholder (`<CREDIT_CARD_1>`), which the restorer turns back into a value.
pub fn marker(kind: EntityKind) -> String {
    format!("[REDACTED:{}]", kind.as_str())
}

/// The kinds the output guard checks: credentials and the PII that identifies or reaches a
/// person. Left out on purpose: `PERSON` (answers name public figures that no source mentions),
/// `MEDICAL_CONDITION` (general vocabulary: "diabetes"), `SWIFT_BIC` (public bank codes), and
/// `IP_ADDRESS`/`MAC_ADDRESS` (answers about networks use example addresses).
pub fn is_guarded(kind: EntityKind) -> bool {
    kind.is_secret()
        || matches!(
            kind,
            EntityKind::Email
                | EntityKind::Phone
                | EntityKind::CreditCard
                | EntityKind::Iban
                | EntityKind::UsSsn
                | EntityKind::UsItin
                | EntityKind::UkNino
                | EntityKind::UkNhs
                | EntityKind::Passport
                | EntityKind::DateOfBirth
                | EntityKind::StreetAddress
                | EntityKind::MedicalRecordNumber
                | EntityKind::CryptoWallet
        )
}

/// What the guard did to one answer: kinds and counts, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardReport {
    /// Values replaced by a marker because the context did not hold them.
    pub redacted: BTreeMap<EntityKind, u32>,
    /// Guarded values let through because the context held them.
    pub passed: BTreeMap<EntityKind, u32>,
}

impl GuardReport {
    /// How many values were redacted.
    pub fn redacted_total(&self) -> u32 {
        self.redacted.values().sum()
    }

    /// Keeps the larger count per kind (the same answer guarded twice, streamed and whole).
    pub fn merge_max(&mut self, other: &GuardReport) {
        for (mine, theirs) in [(&mut self.redacted, &other.redacted), (&mut self.passed, &other.passed)] {
            for (k, n) in theirs {
                let e = mine.entry(*k).or_insert(0);
                *e = (*e).max(*n);
            }
        }
    }
}

/// Text committed per step: the guard emits in steps of about this many bytes.
const STEP: usize = 128;
/// Text after a step that is detected with it, so a finding that starts in the step is seen
/// whole, with the words after it that raise its score ("… is my card number").
const RIGHT: usize = 256;
/// Text before a step that is detected with it (the detector's context window is 40 bytes).
const LEFT: usize = 64;
/// A run of non-whitespace longer than this is cut (a token, a JWT or a key is shorter).
const MAX_RUN: usize = 1024;
/// A PEM block is held until its END line, or this many bytes after BEGIN.
const PEM_CAP: usize = 16 * 1024;

/// Guards an answer as it streams: [`push`](Self::push) each piece, then
/// [`finish`](Self::finish).
///
/// The answer is cut into steps of about [`STEP`] bytes at whitespace, and each step is detected
/// together with 64 bytes before it and 256 after it (a PEM block: up to its END line). Where the
/// steps fall depends only on the text, never on how it was split into pieces, so the
/// concatenated output of any split equals the output for the whole answer (a property test
/// checks it). The guard holds back at most about 400 bytes (more only for a run of non-space
/// characters, up to 1 KiB, or an unfinished PEM block, up to 16 KiB).
///
/// A guarded value ([`is_guarded`], not a documented example key) is let through when its
/// normalised form (letters and digits, lower case, full-width folded) occurs in the normalised
/// context: the check is on the text, so a value the detector scores differently in the context
/// still counts as present.
pub struct OutputGuard<'d> {
    detector: &'d Detector,
    /// The context, normalised; texts separated by NUL (which no normalised value contains).
    context: String,
    /// Received text from absolute offset `base`.
    buf: String,
    base: usize,
    /// Absolute offset up to which text has been emitted.
    emitted: usize,
    report: GuardReport,
}

impl<'d> OutputGuard<'d> {
    /// `context_texts`: everything the backend was permitted to see, with original values (the
    /// prompt before pseudonymisation).
    pub fn new(detector: &'d Detector, context_texts: &[&str]) -> Self {
        let mut context = String::new();
        for t in context_texts {
            normalise_into(t, &mut context);
            context.push('\0');
        }
        OutputGuard { detector, context, buf: String::new(), base: 0, emitted: 0, report: GuardReport::default() }
    }

    /// Takes the next piece of the answer and returns the text that is safe to emit now.
    pub fn push(&mut self, piece: &str) -> String {
        self.buf.push_str(piece);
        let mut out = String::new();
        while self.step(&mut out, false) {}
        out
    }

    /// The rest of the answer, and what was done.
    pub fn finish(mut self) -> (String, GuardReport) {
        let mut out = String::new();
        while self.step(&mut out, true) {}
        (out, self.report)
    }

    /// Bytes received but not yet emitted.
    pub fn pending(&self) -> usize {
        self.base + self.buf.len() - self.emitted
    }

    fn len(&self) -> usize {
        self.base + self.buf.len()
    }

    fn at(&self, abs: usize) -> &str {
        &self.buf[abs - self.base..]
    }

    fn slice(&self, start: usize, end: usize) -> &str {
        &self.buf[start - self.base..end - self.base]
    }

    fn ceil_char(&self, abs: usize) -> usize {
        let mut p = abs.min(self.len());
        while !self.buf.is_char_boundary(p - self.base) {
            p += 1;
        }
        p
    }

    fn floor_char(&self, abs: usize) -> usize {
        let mut p = abs.max(self.base);
        while !self.buf.is_char_boundary(p - self.base) {
            p -= 1;
        }
        p
    }

    /// The first whitespace at or after `target`, or `cap` if none comes before it; `None`
    /// while the text received so far cannot tell.
    fn boundary(&self, target: usize, cap: usize, last: bool) -> Option<usize> {
        let len = self.len();
        if target >= len {
            return last.then_some(len);
        }
        let from = self.ceil_char(target);
        for (i, c) in self.at(from).char_indices() {
            let p = from + i;
            if p >= cap {
                return Some(p);
            }
            if c.is_whitespace() {
                return Some(p);
            }
        }
        if cap <= len || last {
            Some(len)
        } else {
            None
        }
    }

    /// Where the detection window must reach for a PEM block that begins in `e..c`: past its END
    /// line, or [`PEM_CAP`] bytes after BEGIN. `Some(None)` when there is no block,
    /// `None` while the text received so far cannot tell.
    fn pem_end(&self, e: usize, c: usize, last: bool) -> Option<Option<usize>> {
        let Some(b) = self.slice(e, c).find("-----BEGIN").map(|i| e + i) else { return Some(None) };
        let len = self.len();
        let cap = b + PEM_CAP;
        if let Some(q) = self.at(b).find("-----END").map(|i| b + i) {
            if q < cap {
                return match self.at(q).find('\n') {
                    Some(nl) => Some(Some((q + nl).min(cap))),
                    None if last || len >= cap => Some(Some(len.min(cap))),
                    None => None,
                };
            }
        }
        if len >= cap {
            Some(Some(self.ceil_char(cap)))
        } else if last {
            Some(Some(len))
        } else {
            None
        }
    }

    /// Commits one step if the text allows; `false` when it must wait (or everything is out).
    fn step(&mut self, out: &mut String, last: bool) -> bool {
        let e = self.emitted;
        let len = self.len();
        if e >= len {
            return false;
        }
        let Some(c) = self.boundary(e + STEP, e + STEP + MAX_RUN, last) else { return false };
        let Some(mut w) = self.boundary(c + RIGHT, c + RIGHT + MAX_RUN, last) else { return false };
        match self.pem_end(e, c, last) {
            None => return false,
            Some(Some(p)) => w = w.max(self.ceil_char(p)),
            Some(None) => {}
        }
        let ws = self.floor_char(e.saturating_sub(LEFT));
        let findings: Vec<Finding> = self
            .detector
            .detect(self.slice(ws, w))
            .into_iter()
            .map(|mut f| {
                f.start += ws;
                f.end += ws;
                f
            })
            .filter(|f| f.end > e && is_guarded(f.kind) && !f.evidence.contains(&"example-key"))
            .collect();
        let mut findings = findings;
        findings.sort_by_key(|f| (f.start, f.end));
        // Redacted findings that run past the step extend it, so a value is never cut in two.
        let mut cc = c;
        let mut redact: Vec<(usize, usize, EntityKind)> = Vec::new();
        for f in &findings {
            if f.start >= cc {
                continue;
            }
            if self.in_context(self.slice(f.start, f.end)) {
                if f.start >= e {
                    *self.report.passed.entry(f.kind).or_insert(0) += 1;
                }
                continue;
            }
            cc = cc.max(f.end);
            redact.push((f.start.max(e), f.end, f.kind));
        }
        let mut pos = e;
        for (start, end, kind) in redact {
            if start < pos {
                continue;
            }
            out.push_str(self.slice(pos, start));
            out.push_str(&marker(kind));
            *self.report.redacted.entry(kind).or_insert(0) += 1;
            pos = end;
        }
        out.push_str(self.slice(pos, cc));
        self.emitted = cc;
        // Keep what the next step's left context needs; drop the rest now and then.
        let keep_from = self.floor_char(cc.saturating_sub(LEFT + 8));
        if keep_from - self.base > 4096 {
            self.buf.drain(..keep_from - self.base);
            self.base = keep_from;
        }
        true
    }

    fn in_context(&self, value: &str) -> bool {
        let mut v = String::with_capacity(value.len());
        normalise_into(value, &mut v);
        self.context.contains(&v)
    }
}

impl std::fmt::Debug for OutputGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputGuard")
            .field("pending", &self.pending())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// Guards a whole answer: the same as pushing it in one piece and finishing.
pub fn guard_text(detector: &Detector, context_texts: &[&str], text: &str) -> (String, GuardReport) {
    let mut g = OutputGuard::new(detector, context_texts);
    let mut out = g.push(text);
    let (rest, report) = g.finish();
    out.push_str(&rest);
    (out, report)
}

/// Letters and digits, lower case, full-width forms folded: `4111-1111 1111 1111` and
/// `４１１１111111111111` are the same value.
fn normalise_into(text: &str, out: &mut String) {
    for c in text.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> Detector {
        Detector::new().unwrap()
    }

    #[test]
    fn a_card_not_in_the_context_is_redacted_and_one_in_it_passes() {
        let d = detector();
        let answer = "Your card 4111 1111 1111 1111 is on file. Call +44 20 7946 0958.";
        let (out, report) = guard_text(&d, &["The policy covers travel."], answer);
        assert!(out.contains("[REDACTED:CREDIT_CARD]"), "{out}");
        assert!(!out.contains("4111"), "{out}");
        assert_eq!(report.redacted.get(&EntityKind::CreditCard), Some(&1));
        let (out, report) = guard_text(&d, &["Card on file: 4111-1111-1111-1111."], answer);
        assert!(out.contains("4111 1111 1111 1111"), "{out}");
        assert_eq!(report.passed.get(&EntityKind::CreditCard), Some(&1));
        assert!(!report.redacted.contains_key(&EntityKind::CreditCard));
    }

    #[test]
    fn text_without_findings_is_unchanged_and_streams() {
        let d = detector();
        let text = "The leave policy gives 27 days plus bank holidays. ".repeat(30);
        let mut g = OutputGuard::new(&d, &[]);
        let mut out = String::new();
        let mut max_pending = 0;
        for piece in text.as_bytes().chunks(7) {
            out.push_str(&g.push(std::str::from_utf8(piece).unwrap()));
            max_pending = max_pending.max(g.pending());
        }
        assert!(max_pending < STEP + RIGHT + 64, "held back {max_pending} bytes");
        assert!(out.len() > text.len() / 2, "most of the answer flowed before the end");
        let (rest, report) = g.finish();
        out.push_str(&rest);
        assert_eq!(out, text);
        assert_eq!(report, GuardReport::default());
    }

    #[test]
    fn a_pem_block_is_held_to_its_end_line() {
        let d = detector();
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n".repeat(12);
        let answer = format!("Here it is:\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\nDone.");
        let (out, report) = guard_text(&d, &[], &answer);
        assert!(!out.contains("MIIEvQ"), "{out}");
        assert_eq!(report.redacted.get(&EntityKind::PrivateKey), Some(&1), "{out}");
        assert!(out.ends_with("Done."), "{out}");
    }

    #[test]
    fn people_and_conditions_are_not_guarded() {
        let d = detector();
        let answer = "Dr Jane Smith wrote about diabetes and the patient's insulin.";
        let (out, _) = guard_text(&d, &[], answer);
        assert_eq!(out, answer);
    }
}
