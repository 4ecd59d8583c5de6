//! `[audit]`: when audit records reach the disk and how often the chain is signed. The log
//! itself is always on: there is no setting that turns it off.

use serde::Deserialize;

/// Validated `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// `true` (default): every record is flushed to disk (`fdatasync`) before the request goes on,
    /// so a record survives a power cut. `false` leaves flushing to the operating system.
    pub fsync: bool,
    /// A signed checkpoint after this many records.
    pub checkpoint_every: u64,
    /// …or once this many seconds have passed since the last one.
    pub checkpoint_seconds: u64,
}

impl Default for Audit {
    fn default() -> Self {
        Audit { fsync: true, checkpoint_every: 1000, checkpoint_seconds: 60 }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    fsync: Option<bool>,
    checkpoint_every: Option<u64>,
    checkpoint_seconds: Option<u64>,
}

impl RawAudit {
    pub(crate) fn validate(self) -> Result<Audit, (String, String)> {
        let d = Audit::default();
        let a = Audit {
            fsync: self.fsync.unwrap_or(d.fsync),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            checkpoint_seconds: self.checkpoint_seconds.unwrap_or(d.checkpoint_seconds),
        };
        if !(1..=1_000_000).contains(&a.checkpoint_every) {
            return Err(("audit.checkpoint_every".into(), "must be between 1 and 1000000".into()));
        }
        if !(1..=86_400).contains(&a.checkpoint_seconds) {
            return Err(("audit.checkpoint_seconds".into(), "must be between 1 and 86400".into()));
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(RawAudit::default().validate().unwrap(), Audit::default());
        let zero = RawAudit { checkpoint_every: Some(0), ..RawAudit::default() };
        assert_eq!(zero.validate().unwrap_err().0, "audit.checkpoint_every");
        let long = RawAudit { checkpoint_seconds: Some(100_000), ..RawAudit::default() };
        assert_eq!(long.validate().unwrap_err().0, "audit.checkpoint_seconds");
    }
}
