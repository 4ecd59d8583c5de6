//! Guards around the model, pure (text in, decisions out; no IO):
//!
//! - **Injected instructions** ([`scan_instructions`], [`screen_passages`]): retrieved or
//!   ingested text that reads like instructions to the model — overrides ("ignore previous
//!   instructions", "you are now …"), chat-template role markers (`system:` at a line start,
//!   `<|im_start|>`, `[INST]`, `### Instruction:`), tool-call syntax (`<tool_call>`,
//!   `"tool_calls"`, `{"name": …, "arguments":`) and hidden text (bidi overrides, Unicode tag
//!   characters, runs of zero-width characters) — is flagged with byte spans, and the configured
//!   [`InjectionAction`] decides whether a flagged passage reaches the prompt.
//! - **Output guard** ([`OutputGuard`]): secrets and PII in an answer that were not in the
//!   permitted context are replaced by `[REDACTED:KIND]` as the answer streams.
//!
//! # What the injection scan does and does not catch
//!
//! The rules are phrase and syntax patterns, tuned on the labelled set in
//! `tests/data/guard/injection.txt` (precision and recall are asserted). They see through case,
//! extra spaces, full-width letters, zero-width characters inside words and Cyrillic/Greek
//! look-alike letters. They do not understand paraphrase ("kindly set aside what you were told
//! earlier"), other languages, letter-spaced words (`i g n o r e`) or instructions in images.
//!
//! Text that *discusses* prompt injection and quotes an attack phrase ("attackers write 'ignore
//! previous instructions' into web pages") is flagged: the model reads the quoted phrase just
//! the same, and a scanner cannot tell a quotation from an attack that pretends to be one. A
//! deployment that indexes security training material sets `[guard] injection = "allow"`, which
//! keeps such passages in the prompt (delimited as data) and still records the flag. Prose about
//! the topic without the literal phrases ("the attack tries to make the model disregard its
//! instructions") is not flagged, and neither is everyday "act as" ("act as a host").

mod injection;
mod output;

pub use injection::{
    injection_counts, scan_instructions, screen_passages, InjectionAction, InjectionFlag, ParseActionError,
    PassageDecision, Screened,
};
pub use output::{guard_text, is_guarded, marker, GuardReport, OutputGuard};
pub use perimeter_types::InjectionKind;
