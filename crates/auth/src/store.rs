//! The key store: `<data>/keys.sqlite3`, written by `perimeter keys` and read by the server on
//! every request, so a key created, revoked or expired from the CLI takes effect on a running
//! server at its next request (no cache to invalidate).
//!
//! The file is created with mode 0600 on the first `keys create`. Until then no key exists and
//! the server is open. Once a key has existed the server stays closed, even when every key is
//! revoked or expired: revoking the last key must never reopen it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::access::{normalise_groups, Principal, Role};
use crate::key::{ApiKey, KeyId, SecretDigest, RANDOM_BYTES};

/// The key store's file name under the data directory.
pub const KEYS_FILE: &str = "keys.sqlite3";

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key store {path}: {reason}")]
    Database { path: String, reason: String },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("{0}")]
    Invalid(String),
}

/// A key to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub tenant: String,
    pub role: Role,
    pub groups: Vec<String>,
    /// Unix seconds after which the key is refused; `None`: never expires.
    pub expires_at: Option<i64>,
}

/// One stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    pub groups: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl KeyRecord {
    /// Usable at `now`: not revoked and not expired.
    pub fn active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// Why a presented key was refused. For the audit record and the log; the HTTP answer does not
/// distinguish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// Not shaped like a Perimeter key.
    Malformed,
    /// No key with that id.
    Unknown,
    /// The id exists but the secret does not match.
    WrongSecret,
    Revoked,
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
        }
    }
}

/// The outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// No key has ever been created: the server is open and the request is anonymous.
    Open,
    Granted(Principal),
    /// `key_id` is the presented id when it parsed (public; for the audit record).
    Refused {
        refusal: Refusal,
        key_id: Option<String>,
    },
}

/// The SQLite key store. Opening is lazy: the file may not exist yet, and may be created by the
/// CLI while a server runs.
pub struct KeyStore {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("path", &self.path).finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    secret_sha256 BLOB NOT NULL,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);";

impl KeyStore {
    /// The key store of `data_dir`. Touches nothing on disk.
    pub fn at(data_dir: &Path) -> Self {
        KeyStore { path: data_dir.join(KEYS_FILE), conn: Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> KeyStoreError {
        KeyStoreError::Database { path: self.path.display().to_string(), reason: e.to_string() }
    }

    /// Runs `f` on the connection, opening it first. `create`: make the file if it is missing;
    /// otherwise a missing file gives `Ok(None)`.
    fn with<T>(
        &self,
        create: bool,
        f: impl FnOnce(&Connection) -> Result<T, KeyStoreError>,
    ) -> Result<Option<T>, KeyStoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if !self.path.exists() {
                if !create {
                    return Ok(None);
                }
                self.create_file()?;
            }
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| self.err(e))?;
            conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| self.err(e))?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| self.err(e))?;
            conn.execute_batch(SCHEMA).map_err(|e| self.err(e))?;
            *guard = Some(conn);
        }
        match guard.as_ref() {
            Some(conn) => f(conn).map(Some),
            None => Ok(None),
        }
    }

    /// Creates the file readable by its owner only: it holds digests, not keys, but its rows
    /// still say who may do what.
    fn create_file(&self) -> Result<(), KeyStoreError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(&self.path).map(drop).map_err(|e| self.err(e))
    }

    /// Creates a key and returns it: the only time its secret exists outside the client.
    /// `now` is unix seconds. The tenant is checked by the caller against the configuration.
    pub fn create(&self, new: &NewKey, now: i64) -> Result<(ApiKey, KeyRecord), KeyStoreError> {
        if new.tenant.trim().is_empty() {
            return Err(KeyStoreError::Invalid("the tenant must not be empty".into()));
        }
        let groups = normalise_groups(&new.groups).map_err(KeyStoreError::Invalid)?;
        if let Some(e) = new.expires_at {
            if e <= now {
                return Err(KeyStoreError::Invalid("the expiry must be in the future".into()));
            }
        }
        let mut random = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut random).map_err(|e| KeyStoreError::Random(e.to_string()))?;
        let key = ApiKey::from_random(&random);
        let record = KeyRecord {
            id: key.id().to_string(),
            tenant: new.tenant.clone(),
            role: new.role,
            groups,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
        };
        self.with(true, |conn| {
            conn.execute(
                "INSERT INTO keys (id, secret_sha256, tenant, role, groups, created_at, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
                params![
                    record.id,
                    key.digest().0.as_slice(),
                    record.tenant,
                    record.role.as_str(),
                    record.groups.join(","),
                    record.created_at,
                    record.expires_at
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
        })?;
        Ok((key, record))
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        Ok(self
            .with(false, |conn| {
                let mut stmt = conn
                    .prepare("SELECT id, tenant, role, groups, created_at, expires_at, revoked_at FROM keys ORDER BY created_at, id")
                    .map_err(|e| self.err(e))?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                            r.get::<_, Option<i64>>(6)?,
                        ))
                    })
                    .map_err(|e| self.err(e))?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, tenant, role, groups, created_at, expires_at, revoked_at) = row.map_err(|e| self.err(e))?;
                    out.push(KeyRecord {
                        role: role.parse().map_err(|e| self.err(format!("key {id}: {e}")))?,
                        groups: split_groups(&groups),
                        id,
                        tenant,
                        created_at,
                        expires_at,
                        revoked_at,
                    });
                }
                Ok(out)
            })?
            .unwrap_or_default())
    }

    /// Revokes a key at `now`. `Ok(false)` when no key has that id; revoking twice keeps the
    /// first time.
    pub fn revoke(&self, id: &str, now: i64) -> Result<bool, KeyStoreError> {
        let Some(id) = KeyId::parse(id) else { return Ok(false) };
        Ok(self
            .with(false, |conn| {
                conn.execute(
                    "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    params![id.as_str(), now],
                )
                .map(|n| n > 0)
                .map_err(|e| self.err(e))
            })?
            .unwrap_or(false))
    }

    /// Whether any key has ever been created (revoked and expired ones count).
    pub fn any(&self) -> Result<bool, KeyStoreError> {
        Ok(self
            .with(false, |conn| {
                conn.query_row("SELECT EXISTS(SELECT 1 FROM keys)", [], |r| r.get::<_, bool>(0))
                    .map_err(|e| self.err(e))
            })?
            .unwrap_or(false))
    }

    /// Authenticates one request from the bearer token it presented (if any), at `now` (unix
    /// seconds). Reads the store every time. An error means the store could not be read: the
    /// caller must refuse the request (fail closed), never treat it as open.
    pub fn authenticate(&self, token: Option<&str>, now: i64) -> Result<Authentication, KeyStoreError> {
        if !self.any()? {
            return Ok(Authentication::Open);
        }
        let refused = |refusal, key_id: Option<&KeyId>| {
            Ok(Authentication::Refused { refusal, key_id: key_id.map(ToString::to_string) })
        };
        let Some(token) = token else { return refused(Refusal::Missing, None) };
        let Some(key) = ApiKey::parse(token) else { return refused(Refusal::Malformed, None) };
        let row = self
            .with(false, |conn| {
                conn.query_row(
                    "SELECT secret_sha256, tenant, role, groups, expires_at, revoked_at FROM keys WHERE id = ?1",
                    params![key.id().as_str()],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                        ))
                    },
                )
                .optional()
                .map_err(|e| self.err(e))
            })?
            .flatten();
        let Some((digest, tenant, role, groups, expires_at, revoked_at)) = row else {
            return refused(Refusal::Unknown, Some(key.id()));
        };
        let stored: [u8; 32] =
            digest.try_into().map_err(|_| self.err(format!("key {}: the stored digest is malformed", key.id())))?;
        if !SecretDigest(stored).matches(&key.digest()) {
            return refused(Refusal::WrongSecret, Some(key.id()));
        }
        if revoked_at.is_some() {
            return refused(Refusal::Revoked, Some(key.id()));
        }
        if expires_at.is_some_and(|e| now >= e) {
            return refused(Refusal::Expired, Some(key.id()));
        }
        let role = role.parse().map_err(|e| self.err(format!("key {}: {e}", key.id())))?;
        Ok(Authentication::Granted(Principal {
            key_id: Some(key.id().to_string()),
            tenant,
            role,
            groups: split_groups(&groups),
        }))
    }
}

fn split_groups(s: &str) -> Vec<String> {
    s.split(',').filter(|g| !g.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(tenant: &str, role: Role, groups: &[&str]) -> NewKey {
        NewKey { tenant: tenant.into(), role, groups: groups.iter().map(|g| g.to_string()).collect(), expires_at: None }
    }

    #[test]
    fn without_a_file_the_store_is_open_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::at(dir.path());
        assert_eq!(store.authenticate(None, 0).unwrap(), Authentication::Open);
        assert_eq!(store.authenticate(Some("sk-anything"), 0).unwrap(), Authentication::Open);
        assert!(store.list().unwrap().is_empty());
        assert!(!store.revoke("0123456789abcdef", 0).unwrap());
        assert!(!store.path().exists());
    }

    #[test]
    fn a_created_key_authenticates_and_the_rest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::at(dir.path());
        let (key, record) = store.create(&new("acme", Role::User, &["HR", "eng"]), 100).unwrap();
        assert_eq!(record.groups, ["hr", "eng"]);
        let text = key.expose();
        match store.authenticate(Some(&text), 101).unwrap() {
            Authentication::Granted(p) => {
                assert_eq!(p.key_id.as_deref(), Some(record.id.as_str()));
                assert_eq!(
                    (p.tenant.as_str(), p.role, p.groups.clone()),
                    ("acme", Role::User, vec!["hr".into(), "eng".into()])
                );
            }
            other => panic!("{other:?}"),
        }
        let refusal = |token: Option<&str>| match store.authenticate(token, 101).unwrap() {
            Authentication::Refused { refusal, .. } => refusal,
            other => panic!("{other:?}"),
        };
        assert_eq!(refusal(None), Refusal::Missing);
        assert_eq!(refusal(Some("sk-whatever")), Refusal::Malformed);
        let mut wrong = text.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert_eq!(refusal(Some(&wrong)), Refusal::WrongSecret);
        let other_id = format!("prm_{}_{}", "f".repeat(16), &text[21..]);
        assert_eq!(refusal(Some(&other_id)), Refusal::Unknown);
    }

    #[test]
    fn revocation_and_expiry_apply_at_the_next_request_even_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let server = KeyStore::at(dir.path());
        // The server opened (and found nothing) before the CLI made the file.
        assert_eq!(server.authenticate(None, 0).unwrap(), Authentication::Open);
        let cli = KeyStore::at(dir.path());
        let (key, record) =
            cli.create(&NewKey { expires_at: Some(200), ..new("default", Role::Admin, &[]) }, 100).unwrap();
        let text = key.expose();
        assert!(matches!(server.authenticate(Some(&text), 199).unwrap(), Authentication::Granted(_)));
        assert!(matches!(
            server.authenticate(Some(&text), 200).unwrap(),
            Authentication::Refused { refusal: Refusal::Expired, .. }
        ));
        let (key2, record2) = cli.create(&new("default", Role::User, &[]), 100).unwrap();
        assert!(matches!(server.authenticate(Some(&key2.expose()), 150).unwrap(), Authentication::Granted(_)));
        assert!(cli.revoke(&record2.id, 160).unwrap());
        assert!(cli.revoke(&record2.id, 170).unwrap());
        assert!(matches!(
            server.authenticate(Some(&key2.expose()), 161).unwrap(),
            Authentication::Refused { refusal: Refusal::Revoked, .. }
        ));
        let listed = cli.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed.iter().find(|k| k.id == record2.id).unwrap().revoked_at, Some(160));
        assert!(!listed.iter().find(|k| k.id == record.id).unwrap().active(300));
        // Every key revoked or expired: the server stays closed.
        assert!(cli.revoke(&record.id, 170).unwrap());
        assert!(matches!(
            server.authenticate(None, 300).unwrap(),
            Authentication::Refused { refusal: Refusal::Missing, .. }
        ));
    }

    #[test]
    fn bad_keys_are_refused_at_creation_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::at(dir.path());
        let e = store.create(&NewKey { expires_at: Some(5), ..new("t", Role::User, &[]) }, 10).unwrap_err();
        assert!(e.to_string().contains("future"), "{e}");
        let e = store.create(&new("t", Role::User, &["no spaces"]), 10).unwrap_err();
        assert!(e.to_string().contains("\"no spaces\""), "{e}");
        let e = store.create(&new(" ", Role::User, &[]), 10).unwrap_err();
        assert!(e.to_string().contains("tenant"), "{e}");
        assert!(!store.path().exists(), "nothing created for refused keys");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::at(dir.path());
        store.create(&new("t", Role::User, &[]), 10).unwrap();
        let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
