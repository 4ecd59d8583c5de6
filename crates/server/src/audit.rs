//! The audit trail of requests: which records a request leaves, built from the decision and
//! its outcome, and appended to the data directory's hash-chained log
//! (`perimeter_store::audit_file`). Records carry kinds, counts, ids, names and a keyed HMAC of
//! the query, never prompt text, document text, values or keys.
//!
//! Fail closed: a request whose routing record cannot be written is refused before any byte
//! goes to a backend.

use std::collections::BTreeMap;
use std::path::Path;

use perimeter_audit::{Record, RecordKind};
use perimeter_store::audit_file::{AuditLog, AuditLogError, AuditOptions};
use perimeter_types::EntityKind;

use crate::error::ApiError;

/// The log, or why it could not be opened (then every request that would leave a record is
/// refused).
pub struct Auditor {
    log: Result<AuditLog, String>,
}

/// Who asked and what, for every record of one request.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Links the request's records (routing, completion, refusal).
    pub request_id: String,
    pub tenant: String,
    /// The API key's id (never the key); `None` without keys or from the CLI.
    pub principal: Option<String>,
    /// Keyed HMAC of the query text (never the text).
    pub query_hmac: Option<String>,
}

impl Auditor {
    /// Opens the data directory's log (creating keys and the first segment when missing).
    pub fn open(data_dir: &Path, options: AuditOptions) -> Result<Auditor, AuditLogError> {
        let log = AuditLog::open(data_dir, options)?;
        let opened = log.opened();
        if opened.created_keys {
            tracing::info!(key_id = %log.key_id(), "created the audit signing and HMAC keys (perimeter init was not run)");
        }
        if let Some((path, status)) = &opened.replaced {
            tracing::warn!(previous = %path.display(), %status, segment = %opened.segment.display(), "the audit log did not verify; a new linked segment was started and the break is on record");
        }
        tracing::info!(records = opened.records, segment = %opened.segment.display(), "audit log verified");
        Ok(Auditor { log: Ok(log) })
    }

    /// An auditor that refuses every record (the log could not be opened): requests fail closed.
    pub fn unavailable(reason: String) -> Auditor {
        Auditor { log: Err(reason) }
    }

    pub fn log(&self) -> Option<&AuditLog> {
        self.log.as_ref().ok()
    }

    /// A fresh request context (new request id, HMAC of the query when there is one).
    pub fn context(&self, tenant: &str, principal: Option<&str>, query: Option<&str>) -> RequestContext {
        RequestContext {
            request_id: request_id(),
            tenant: tenant.to_string(),
            principal: principal.map(str::to_string),
            query_hmac: match (&self.log, query) {
                (Ok(log), Some(q)) => Some(log.query_hmac(q)),
                _ => None,
            },
        }
    }

    /// Appends one record. An error is returned as a 503-class refusal without details of the
    /// record (the log's own error is logged).
    pub fn append(&self, record: Record) -> Result<(), ApiError> {
        let log = self.log.as_ref().map_err(|reason| {
            tracing::error!(%reason, "the audit log is unavailable; refusing the request");
            ApiError::AuditUnavailable
        })?;
        log.append(record).map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "could not write the audit record; refusing the request");
            ApiError::AuditUnavailable
        })
    }

    /// [`Auditor::append`] off the async workers: the append may wait for a disk flush, which
    /// must not stall other requests on the runtime's few threads.
    pub async fn append_async(self: &std::sync::Arc<Self>, record: Record) -> Result<(), ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.append(record)).await.map_err(|_| ApiError::AuditUnavailable)?
    }

    /// [`Auditor::append_best_effort`] off the async workers.
    pub async fn append_best_effort_async(self: &std::sync::Arc<Self>, record: Record) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.append_best_effort(record)).await;
    }

    /// Appends a record whose loss must not fail anything (a model verification result when the
    /// log is broken, say): the failure is logged.
    /// It is written before this returns (a process crash keeps it) but flushed to disk with the
    /// next routing record or checkpoint, so an answer does not wait for a second disk flush.
    pub fn append_best_effort(&self, record: Record) {
        let Ok(log) = &self.log else {
            tracing::error!("audit record not written: the audit log is unavailable");
            return;
        };
        if let Err(e) = log.append_with(record, false) {
            tracing::error!(error = %e, "audit record not written");
        }
    }

    /// Writes a signed checkpoint if records follow the last one (timer and shutdown).
    pub fn checkpoint(&self) {
        if let Ok(log) = &self.log {
            if let Err(e) = log.checkpoint_now() {
                tracing::error!(error = %e, "could not write the audit checkpoint");
            }
        }
    }
}

/// The embedded models' verification at start-up or on a schedule: `error` is `None` when both
/// verified. A failure is always recorded; the reason names files and digests, never content.
pub fn record_model_verification(
    auditor: &Auditor,
    config: &perimeter_config::Config,
    error: Option<&impl std::fmt::Display>,
) {
    let mut r = Record::new(RecordKind::ModelVerification);
    r.backend = Some(perimeter_config::EMBEDDED_BACKEND.to_string());
    r.detail.insert("embedding_model".into(), config.models.embedding.clone());
    r.detail.insert("chat_model".into(), config.models.chat.clone());
    r.detail.insert("signed_manifest_required".into(), config.models.signature.is_some().to_string());
    match error {
        None => r.outcome = Some("verified".into()),
        Some(e) => {
            r.outcome = Some("failed".into());
            r.reasons.push(e.to_string());
        }
    }
    auditor.append_best_effort(r);
}

/// Records the policy in force when it differs from the last one on record (start-up): its
/// digest, and the previous digest, so "which policy decided this" is answerable from the log.
pub fn record_policy(auditor: &Auditor, config: &perimeter_config::Config) {
    use sha2::Digest;
    let Some(log) = auditor.log() else { return };
    // The policy's own inputs (backends as the policy sees them, tenants, rules, availability),
    // not the whole file: a changed listen address is not a policy change.
    let digest = hex::encode(sha2::Sha256::digest(format!("{:?}", config.policy_input).as_bytes()));
    let filter = perimeter_audit::Filter { kind: Some(RecordKind::PolicyChange), ..perimeter_audit::Filter::default() };
    let previous = match log.export(&filter) {
        Ok(e) => e.records.last().and_then(|r| r.detail.get("policy_sha256").cloned()),
        Err(e) => {
            tracing::error!(error = %e, "could not read the audit log's policy records");
            None
        }
    };
    if previous.as_deref() == Some(digest.as_str()) {
        return;
    }
    let mut r = Record::new(RecordKind::PolicyChange);
    r.detail.insert("policy_sha256".into(), digest);
    if let Some(p) = previous {
        r.detail.insert("previous_policy_sha256".into(), p);
    }
    r.detail.insert("backends".into(), config.backends.len().to_string());
    r.detail.insert("tenants".into(), config.policy_input.tenants.len().to_string());
    r.reasons.push("policy loaded at start-up".into());
    auditor.append_best_effort(r);
}

/// The ingestion gate's audit hook: each document's decision for an embedding backend outside
/// the process becomes a `decision` (or `refusal`) record before any chunk is sent.
pub fn embed_audit(auditor: std::sync::Arc<Auditor>, principal: Option<String>) -> perimeter_index::EmbedAudit {
    std::sync::Arc::new(move |d: &perimeter_index::EmbedDecision<'_>| {
        let kind = if d.outcome.is_ok() { RecordKind::Decision } else { RecordKind::Refusal };
        let mut r = Record::new(kind);
        r.tenant = Some(d.tenant.to_string());
        r.principal = principal.clone();
        r.level = Some(d.level.as_str().to_string());
        r.entities = entity_counts(d.entities);
        r.documents = vec![d.document_id.to_string()];
        r.backend = Some(d.backend.to_string());
        r.detail.insert("purpose".into(), "ingestion_embedding".into());
        match d.outcome {
            Ok(redact) => {
                r.decision = Some("route".into());
                r.redaction = Some(redact);
            }
            Err(reasons) => {
                r.decision = Some("deny".into());
                r.reasons = reasons.to_vec();
                r.outcome = Some("refused".into());
            }
        }
        let log = auditor.log().ok_or_else(|| "the audit log is unavailable".to_string())?;
        log.append(r).map(|_| ()).map_err(|e| e.to_string())
    })
}

/// Whether the embedding backend of `config` runs outside this process.
pub fn embedder_leaves_process(config: &perimeter_config::Config) -> bool {
    config
        .backends
        .iter()
        .find(|b| b.profile.name == config.embedding_backend)
        .is_none_or(|b| b.profile.hosting != perimeter_policy::Hosting::Embedded)
}

/// A record of `kind` for a request.
pub fn request_record(kind: RecordKind, ctx: &RequestContext) -> Record {
    let mut r = Record::new(kind);
    r.request_id = Some(ctx.request_id.clone());
    r.tenant = Some(ctx.tenant.clone());
    r.principal = ctx.principal.clone();
    r.query_hmac = ctx.query_hmac.clone();
    r
}

/// Kinds with counts as the record keeps them (canonical kind names).
pub fn entity_counts(kinds: &BTreeMap<EntityKind, u32>) -> BTreeMap<String, u32> {
    kinds.iter().map(|(k, n)| (k.as_str().to_string(), *n)).collect()
}

/// A request id: 16 random bytes, hex (no time: the record has its own).
fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Uniqueness, not secrecy, is what matters here; fall back to the clock.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b = nanos.to_le_bytes();
    }
    format!("req_{}", hex::encode(b))
}
