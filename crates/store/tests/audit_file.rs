//! The audit log's file sink: open, append, reopen, refusal of a chain that does not verify, new
//! linked segments, torn records, checkpoints, and concurrent appends from threads and from two
//! logs on one folder (a stand-in for two processes) keeping one valid chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use perimeter_audit::{verify, Filter, Reason, Record, RecordKind, Status};
use perimeter_store::audit_file::*;

fn opts() -> AuditOptions {
    AuditOptions { fsync: Fsync::Never, checkpoint_every: 10, checkpoint_seconds: 3600, new_segment: false }
}

fn decision(tenant: &str, level: &str, backend: &str) -> Record {
    let mut r = Record::new(RecordKind::Decision);
    r.tenant = Some(tenant.into());
    r.level = Some(level.into());
    r.backend = Some(backend.into());
    r.decision = Some("route".into());
    r.entities.insert("PERSON".into(), 1);
    r
}

fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("audit").join("audit.log")
}

fn verify_all(dir: &Path) -> Vec<SegmentReport> {
    verify_log(dir, load_public_key(dir).unwrap().as_ref()).unwrap()
}

#[test]
fn open_append_reopen_keeps_one_signed_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions { fsync: Fsync::Always, ..opts() }).unwrap();
    assert!(log.opened().created_keys && log.opened().created_log);
    assert_eq!(log.opened().records, 1, "the signed segment record");
    for i in 0..25u32 {
        let sealed =
            log.append(decision("acme", if i.is_multiple_of(2) { "restricted" } else { "public" }, "vllm")).unwrap();
        assert_eq!(sealed.record.id.len(), 36);
        assert!(sealed.record.time.ends_with('Z'));
    }
    assert!(log.checkpoint_now().unwrap().is_some());
    assert!(log.checkpoint_now().unwrap().is_none(), "nothing new to seal");
    drop(log);

    let log = AuditLog::open(dir.path(), opts()).unwrap();
    assert!(!log.opened().created_keys && !log.opened().created_log);
    // 1 segment + 25 records + 2 checkpoints every 10 + 1 explicit checkpoint.
    assert_eq!(log.opened().records, 29);
    let sealed = log.append(decision("acme", "internal", "openai-eu")).unwrap();
    assert_eq!(sealed.record.seq, 29);

    let reports = verify_all(dir.path());
    assert_eq!(reports.len(), 1);
    assert!(reports[0].is_intact(), "{:?}", reports[0]);
    assert!(reports[0].report.signatures_checked);
    assert_eq!(reports[0].report.checkpoints, 4);

    // Keys: secrets are 0600, the public key matches.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["signing.key", "hmac.key"] {
            let mode = fs::metadata(dir.path().join("audit").join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let pub_key = read_public_key_file(&dir.path().join("audit/signing.pub")).unwrap();
    assert_eq!(pub_key, log.public_key());
    assert_eq!(log.query_hmac("same"), log.query_hmac("same"));
    assert_ne!(log.query_hmac("same"), log.query_hmac("other"));
}

#[test]
fn a_tampered_log_is_refused_then_continued_in_a_linked_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts()).unwrap();
    for _ in 0..5 {
        log.append(decision("acme", "restricted", "vllm")).unwrap();
    }
    drop(log);
    let path = log_path(dir.path());
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("\"restricted\"", "\"public\"", 1)).unwrap();

    let err = AuditLog::open(dir.path(), opts()).unwrap_err();
    match &err {
        AuditLogError::Unverified { status: Status::Tampered { line: 2, seq: Some(1), reason }, .. } => {
            assert_eq!(*reason, Reason::HashMismatch)
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 6, "nothing was cut or appended");

    let log = AuditLog::open(dir.path(), AuditOptions { new_segment: true, ..opts() }).unwrap();
    let (old, why) = log.opened().replaced.clone().unwrap();
    assert_eq!(old, path);
    assert!(matches!(why, Status::Tampered { line: 2, .. }));
    assert!(log.opened().segment.ends_with("audit.1.log"));
    log.append(decision("acme", "internal", "vllm")).unwrap();
    drop(log);

    let reports = verify_all(dir.path());
    assert_eq!(reports.len(), 2);
    assert!(!reports[0].is_intact(), "the break stays on record");
    assert!(reports[1].is_intact(), "{:?}", reports[1]);
    let first = reports[1].report.first.clone().unwrap();
    assert_eq!(first.kind, RecordKind::Segment);
    assert_eq!(first.prev_hash, reports[0].report.last_hash, "linked to the last verified record");
    assert_eq!(first.detail["previous_segment"], "audit.log");
    assert!(first.reasons[0].contains("line 2"), "{:?}", first.reasons);

    // Reopening appends to the new segment without complaint.
    let log = AuditLog::open(dir.path(), opts()).unwrap();
    assert!(log.opened().segment.ends_with("audit.1.log"));
    assert_eq!(log.opened().records, 2);

    // Changing the old file after the fact breaks the link.
    drop(log);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{}\n").unwrap();
    let reports = verify_all(dir.path());
    assert!(reports[1].link_problem.as_deref().unwrap().contains("SHA-256"), "{:?}", reports[1].link_problem);
}

#[test]
fn a_torn_last_record_is_reported_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts()).unwrap();
    log.append(decision("acme", "restricted", "vllm")).unwrap();
    drop(log);
    let path = log_path(dir.path());
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":2,\"id\":\"01").unwrap();
    drop(f);
    let before = fs::read(&path).unwrap();

    let err = AuditLog::open(dir.path(), opts()).unwrap_err();
    assert!(matches!(err, AuditLogError::Unverified { status: Status::Torn { line: 3, bytes: 17 }, .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before, "the torn bytes stay");
    let export = export(dir.path(), &Filter::default()).unwrap();
    assert_eq!(export.records.len(), 2);
    assert_eq!(export.torn.len(), 1);
    assert_eq!(export.torn[0].line, 3);

    let log = AuditLog::open(dir.path(), AuditOptions { new_segment: true, ..opts() }).unwrap();
    assert!(matches!(log.opened().replaced, Some((_, Status::Torn { .. }))));
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn garbage_and_truncated_files_give_errors_not_panics() {
    for content in [&b"\0\0\0\0"[..], b"not json\n", b"{\"seq\":0}\n", &[0xff; 5000], b"\n\n\n"] {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("audit")).unwrap();
        fs::write(log_path(dir.path()), content).unwrap();
        let err = AuditLog::open(dir.path(), opts()).unwrap_err();
        assert!(matches!(err, AuditLogError::Unverified { .. }), "{err:?}");
    }
}

#[test]
fn a_log_cut_behind_a_writers_back_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts()).unwrap();
    for _ in 0..3 {
        log.append(decision("acme", "public", "vllm")).unwrap();
    }
    let path = log_path(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 50).unwrap();
    let err = log.append(decision("acme", "public", "vllm")).unwrap_err();
    assert!(matches!(err, AuditLogError::Truncated { .. }), "{err:?}");
}

#[test]
fn concurrent_appends_from_threads_and_two_logs_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(AuditLog::open(dir.path(), opts()).unwrap());
    // A second log on the same folder: its own file handle and lock, like another process.
    let b = Arc::new(AuditLog::open(dir.path(), opts()).unwrap());
    let mut handles = Vec::new();
    for t in 0..4u32 {
        let log = if t.is_multiple_of(2) { a.clone() } else { b.clone() };
        handles.push(std::thread::spawn(move || {
            for i in 0..50 {
                log.append(decision(&format!("t{t}"), "internal", &format!("b{i}"))).unwrap();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    a.checkpoint_now().unwrap();
    let bytes = fs::read(log_path(dir.path())).unwrap();
    let report = verify(&bytes, Some(&a.public_key()));
    assert_eq!(report.status, Status::Intact);
    let all = export(dir.path(), &Filter { kind: Some(RecordKind::Decision), ..Filter::default() }).unwrap();
    assert_eq!(all.records.len(), 200);
    for t in 0..4 {
        let f = Filter { tenant: Some(format!("t{t}")), ..Filter::default() };
        assert_eq!(export(dir.path(), &f).unwrap().records.len(), 50);
    }
    // A checkpoint at least every 10 records.
    assert!(report.checkpoints >= 20, "{}", report.checkpoints);
}

#[test]
fn export_filters_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts()).unwrap();
    log.append(decision("acme", "restricted", "vllm-onprem")).unwrap();
    log.append(decision("acme", "public", "openai-eu")).unwrap();
    log.append(decision("other", "restricted", "vllm-onprem")).unwrap();
    let f = Filter { level: Some("restricted".into()), ..Filter::default() };
    let got = log.export(&f).unwrap().records;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.backend.as_deref() == Some("vllm-onprem")));
    let f = Filter { limit: Some(1), kind: Some(RecordKind::Decision), ..Filter::default() };
    assert_eq!(log.export(&f).unwrap().records[0].tenant.as_deref(), Some("acme"));
    let f = Filter { since: Some(u64::MAX / 2), ..Filter::default() };
    assert!(log.export(&f).unwrap().records.is_empty());
}

#[test]
fn a_time_based_checkpoint_follows_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions { checkpoint_seconds: 0, ..opts() }).unwrap();
    log.append(decision("acme", "public", "vllm")).unwrap();
    let kinds: Vec<RecordKind> =
        export(dir.path(), &Filter::default()).unwrap().records.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [RecordKind::Segment, RecordKind::Decision, RecordKind::Checkpoint]);
}
