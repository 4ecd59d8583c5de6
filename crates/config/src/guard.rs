//! `[guard]`: what happens to retrieved passages with instruction-like content, and whether the
//! output guard checks answers. The raw serde form and its validation; errors name the key.

use perimeter_guard::InjectionAction;
use serde::Deserialize;

/// Validated `[guard]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// `injection`: `quarantine` (default), `drop` or `allow`.
    pub injection: InjectionAction,
    /// `output_guard`: redact secrets and PII in answers that the permitted context did not hold
    /// (default `true`).
    pub output_guard: bool,
}

impl Default for Guard {
    /// Quarantine by default: a flagged passage never reaches the model, and the caller is told
    /// which source was held back and why, so a false positive is visible (and the operator can
    /// choose `allow`). `drop` would hide false positives; `allow` would let injections through.
    fn default() -> Self {
        Guard { injection: InjectionAction::Quarantine, output_guard: true }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuard {
    injection: Option<String>,
    output_guard: Option<bool>,
}

impl RawGuard {
    /// `Err((key, reason))` names the offending key.
    pub(crate) fn validate(self) -> Result<Guard, (String, String)> {
        let d = Guard::default();
        let injection = match self.injection {
            None => d.injection,
            Some(s) => {
                s.parse().map_err(|e: perimeter_guard::ParseActionError| ("guard.injection".into(), e.to_string()))?
            }
        };
        Ok(Guard { injection, output_guard: self.output_guard.unwrap_or(d.output_guard) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Guard, (String, String)> {
        toml::from_str::<RawGuard>(text).map_err(|e| ("toml".to_string(), e.to_string()))?.validate()
    }

    #[test]
    fn defaults_values_and_errors() {
        assert_eq!(parse("").unwrap(), Guard::default());
        assert_eq!(parse("").unwrap().injection, InjectionAction::Quarantine);
        assert!(parse("").unwrap().output_guard);
        let g = parse("injection = \"allow\"\noutput_guard = false").unwrap();
        assert_eq!(g, Guard { injection: InjectionAction::Allow, output_guard: false });
        assert_eq!(parse("injection = \"drop\"").unwrap().injection, InjectionAction::Drop);
        let (key, reason) = parse("injection = \"block\"").unwrap_err();
        assert_eq!(key, "guard.injection");
        assert!(reason.contains("quarantine"), "{reason}");
        let (_, reason) = parse("output_gaurd = true").unwrap_err();
        assert!(reason.contains("output_gaurd"), "{reason}");
    }
}
