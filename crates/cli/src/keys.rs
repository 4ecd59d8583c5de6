//! `perimeter keys create|list|revoke`: API keys in `<data>/keys.sqlite3`. A key is printed once,
//! when it is created; the store keeps only a digest of its secret. A running server reads the
//! store on every request, so these commands take effect on it at once.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use perimeter_auth::{KeyRecord, KeyStore, NewKey, Role};
use perimeter_config::Config;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key. It is shown once: store it where the client can read it.
    Create(CreateArgs),
    /// List keys (ids, tenants, roles, groups, dates; never the keys themselves).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id. A running server refuses it from its next request on.
    Revoke {
        /// The key's id (the 16 hex digits after `prm_`, as `keys list` shows them).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The tenant the key acts for: `default` or a `[[tenant]]` of the configuration.
    #[arg(long)]
    tenant: String,
    /// user (chat, embeddings, documents of its groups), admin (the tenant's documents, keys,
    /// policy reload) or auditor (audit and costs, read-only).
    #[arg(long)]
    role: Role,
    /// Access groups, comma-separated. A user sees the tenant's documents that are open to all
    /// of it or share one of these groups.
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// Expiry: a date (`2027-01-31`, meaning 00:00 UTC that day) or an RFC 3339 time.
    #[arg(long)]
    expires: Option<String>,
    /// Print `{"key": …, "id": …}` as JSON.
    #[arg(long)]
    json: bool,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `2027-01-31` (00:00 UTC) or an RFC 3339 time, as unix seconds.
pub fn parse_expiry(text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(text, &format) {
        Ok(d) => Ok(d.midnight().assume_utc().unix_timestamp()),
        Err(_) => bail!("--expires must be a date (YYYY-MM-DD) or an RFC 3339 time, got {text:?}"),
    }
}

fn when(t: Option<i64>) -> Option<String> {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()).and_then(|t| t.format(&Rfc3339).ok())
}

fn status(k: &KeyRecord, now: i64) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if !k.active(now) {
        "expired"
    } else {
        "active"
    }
}

/// The data directory's audit log (verified on open).
fn audit_log(data_dir: &Path) -> Result<perimeter_store::audit_file::AuditLog> {
    Ok(perimeter_store::audit_file::AuditLog::open(data_dir, perimeter_store::audit_file::AuditOptions::default())?)
}

pub fn run(config: &Config, data_dir: &Path, cmd: KeysCommand) -> Result<i32> {
    let store = KeyStore::at(data_dir);
    match cmd {
        KeysCommand::Create(args) => {
            let tenant = args.tenant.trim().to_string();
            if !config.policy.has_tenant(&tenant) {
                let known: Vec<&str> = config.policy.tenant_names().collect();
                bail!("--tenant {tenant:?} is not declared in the configuration (declared: {})", known.join(", "));
            }
            let expires_at = args.expires.as_deref().map(parse_expiry).transpose()?;
            let new = NewKey { tenant, role: args.role, groups: args.groups.unwrap_or_default(), expires_at };
            // A key change is on record, or it does not happen: open the log first.
            let log = audit_log(data_dir).context("refusing to create a key without an audit record")?;
            let (key, record) = store.create(&new, now())?;
            let mut r = perimeter_audit::Record::new(perimeter_audit::RecordKind::KeyChange);
            r.tenant = Some(record.tenant.clone());
            r.outcome = Some("created".into());
            r.detail.insert("key_id".into(), record.id.clone());
            r.detail.insert("role".into(), record.role.to_string());
            if !record.groups.is_empty() {
                r.detail.insert("groups".into(), record.groups.join(","));
            }
            if let Some(e) = record.expires_at {
                r.detail.insert("expires_at".into(), e.to_string());
            }
            if let Err(e) = log.append(r) {
                // Never leave a usable key that is not on record.
                let _ = store.revoke(&record.id, now());
                bail!("the audit record of the new key could not be written ({e}); the key was revoked again");
            }
            if args.json {
                println!("{}", json!({"key": key.expose(), "id": record.id}));
            } else {
                println!("{}", key.expose());
                eprintln!(
                    "created key {} for tenant {} with role {}{}{}; it is shown only this once",
                    record.id,
                    record.tenant,
                    record.role,
                    if record.groups.is_empty() {
                        String::new()
                    } else {
                        format!(", groups {}", record.groups.join(","))
                    },
                    when(record.expires_at).map(|e| format!(", expiring {e}")).unwrap_or_default()
                );
            }
            Ok(0)
        }
        KeysCommand::List { json } => {
            let keys = store.list()?;
            let now = now();
            if json {
                let data: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id, "tenant": k.tenant, "role": k.role, "groups": k.groups,
                            "created_at": when(Some(k.created_at)), "expires_at": when(k.expires_at),
                            "revoked_at": when(k.revoked_at), "status": status(k, now),
                        })
                    })
                    .collect();
                println!("{}", json!({"data": data}));
            } else if keys.is_empty() {
                eprintln!("no keys: the server is open (see README, \"Keys, roles and tenants\")");
            } else {
                println!("{:<16}  {:<8}  {:<16}  {:<8}  {:<20}  groups", "id", "status", "tenant", "role", "expires");
                for k in &keys {
                    println!(
                        "{:<16}  {:<8}  {:<16}  {:<8}  {:<20}  {}",
                        k.id,
                        status(k, now),
                        k.tenant,
                        k.role,
                        when(k.expires_at).unwrap_or_else(|| "never".into()),
                        if k.groups.is_empty() { "-".into() } else { k.groups.join(",") }
                    );
                }
            }
            Ok(0)
        }
        KeysCommand::Revoke { id, json } => {
            let id = id.trim().to_string();
            if !store.revoke(&id, now())? {
                bail!("no key has the id {:?}", id.chars().take(32).collect::<String>());
            }
            // Revocation takes effect even if the record cannot be written (it only narrows access).
            let mut r = perimeter_audit::Record::new(perimeter_audit::RecordKind::KeyChange);
            r.outcome = Some("revoked".into());
            r.detail.insert("key_id".into(), id.clone());
            if let Some(k) = store.list()?.into_iter().find(|k| k.id == id) {
                r.tenant = Some(k.tenant);
            }
            match audit_log(data_dir).and_then(|log| log.append(r).map_err(anyhow::Error::from)) {
                Ok(_) => {}
                Err(e) => eprintln!("warning: the key is revoked, but its audit record could not be written: {e:#}"),
            }
            if json {
                println!("{}", json!({"id": id, "revoked": true}));
            } else {
                eprintln!("revoked key {id}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_and_times_parse() {
        assert_eq!(parse_expiry("1970-01-02").unwrap(), 86_400);
        assert_eq!(parse_expiry("1970-01-01T00:01:00Z").unwrap(), 60);
        assert_eq!(parse_expiry("1970-01-01T01:00:00+01:00").unwrap(), 0);
        let e = parse_expiry("tomorrow").unwrap_err().to_string();
        assert!(e.contains("\"tomorrow\""), "{e}");
        assert!(parse_expiry("2027-02-30").is_err());
    }
}
