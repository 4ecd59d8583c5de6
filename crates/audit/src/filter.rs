//! Which records an export returns: a time window, kind, tenant, level, backend, decision and a
//! limit. Used by `perimeter audit export` and `GET /v1/audit`.

use crate::record::{Record, RecordKind};

/// Every field that is set must match; `since` is inclusive, `until` exclusive (Unix
/// milliseconds). A record whose time does not parse never matches a time window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub kind: Option<RecordKind>,
    pub tenant: Option<String>,
    pub level: Option<String>,
    pub backend: Option<String>,
    pub decision: Option<String>,
    /// At most this many records (the first ones in log order).
    pub limit: Option<usize>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = r.unix_millis() else { return false };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        let eq = |want: &Option<String>, have: &Option<String>| want.as_ref().is_none_or(|w| have.as_ref() == Some(w));
        self.kind.is_none_or(|k| r.kind == k)
            && eq(&self.tenant, &r.tenant)
            && eq(&self.level, &r.level)
            && eq(&self.backend, &r.backend)
            && eq(&self.decision, &r.decision)
    }
}
