//! Roles, the principal a request acts as, and the route → role authorisation table (pure).

use std::fmt;
use std::str::FromStr;

use perimeter_types::{AccessFilter, DEFAULT_TENANT};
use serde::{Deserialize, Serialize};

/// What a key may do. Every role acts within its own tenant only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Chat, embeddings, models; reads the tenant's documents open to it (tenant-wide ones and
    /// those sharing one of its groups).
    User,
    /// Everything a user may, over all of the tenant's documents, plus document writes, keys and
    /// policy reload.
    Admin,
    /// Audit log and costs, read-only. No chat, embeddings or documents.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so width and alignment work in tables (`keys list`).
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            other => Err(format!(
                "unknown role {:?}: use user, admin or auditor",
                other.chars().take(32).collect::<String>()
            )),
        }
    }
}

/// Who a request acts as: the key's id (public, never the key), tenant, role and groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// `None` for the anonymous principal of a server without keys, and for the operator's own
    /// CLI commands.
    pub key_id: Option<String>,
    pub tenant: String,
    pub role: Role,
    pub groups: Vec<String>,
}

impl Principal {
    /// The principal of every request while no key exists: the default tenant with full access,
    /// as before keys existed.
    pub fn anonymous() -> Self {
        Principal { key_id: None, tenant: DEFAULT_TENANT.to_string(), role: Role::Admin, groups: Vec::new() }
    }

    /// The groups that limit which documents this principal reaches: `None` (all of the tenant)
    /// for an admin, `Some(groups)` otherwise — an empty list then means tenant-wide documents
    /// only, never "everything".
    pub fn access_groups(&self) -> Option<Vec<String>> {
        match self.role {
            Role::Admin => None,
            Role::User | Role::Auditor => Some(self.groups.clone()),
        }
    }

    /// The filter every search and document read of this principal runs with.
    pub fn filter(&self, collections: Option<Vec<String>>) -> AccessFilter {
        AccessFilter { tenant: self.tenant.clone(), collections, groups: self.access_groups() }
    }
}

/// What a request asks to do, from its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/healthz`, `/readyz`, `/openapi.json`: open to everyone, always.
    Open,
    /// `GET /metrics`: deployment-wide counters (all tenants), so not for users.
    Metrics,
    /// `/v1/models`.
    Models,
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
    /// `GET`/`HEAD` on `/v1/documents` and `/v1/documents/{id}`.
    DocumentsRead,
    /// Any other method on `/v1/documents…` (create, delete).
    DocumentsWrite,
    /// `/v1/keys…`.
    Keys,
    /// `/v1/policy/reload`.
    PolicyReload,
    /// `GET`/`HEAD` on `/v1/audit…`.
    AuditRead,
    /// `GET`/`HEAD` on `/v1/costs…`.
    CostsRead,
    /// Any other method on `/v1/audit…` or `/v1/costs…`: both are read-only for every role.
    ReadOnlyWrite,
    /// Anything else: still needs a valid key (so unknown paths tell an anonymous caller
    /// nothing), then answers 404.
    Unknown,
}

/// Classifies a request. Paths are matched exactly or on a `/` boundary, so `/v1/documentsX`
/// is not a document route.
pub fn classify(method: &str, path: &str) -> Endpoint {
    let read = matches!(method, "GET" | "HEAD");
    let under = |base: &str| path == base || path.strip_prefix(base).is_some_and(|r| r.starts_with('/'));
    match path {
        "/healthz" | "/readyz" | "/openapi.json" => Endpoint::Open,
        "/metrics" => Endpoint::Metrics,
        "/v1/chat/completions" => Endpoint::Chat,
        "/v1/embeddings" => Endpoint::Embeddings,
        "/v1/policy/reload" => Endpoint::PolicyReload,
        _ if under("/v1/models") => Endpoint::Models,
        _ if under("/v1/documents") => {
            if read {
                Endpoint::DocumentsRead
            } else {
                Endpoint::DocumentsWrite
            }
        }
        _ if under("/v1/keys") => Endpoint::Keys,
        _ if under("/v1/audit") => {
            if read {
                Endpoint::AuditRead
            } else {
                Endpoint::ReadOnlyWrite
            }
        }
        _ if under("/v1/costs") => {
            if read {
                Endpoint::CostsRead
            } else {
                Endpoint::ReadOnlyWrite
            }
        }
        _ => Endpoint::Unknown,
    }
}

/// The authorisation table: may `role` use `endpoint`? (`Open` is allowed before any key is
/// looked at; it is listed here only for completeness.)
pub fn authorize(role: Role, endpoint: Endpoint) -> bool {
    use Endpoint as E;
    match endpoint {
        E::Open | E::Models | E::Unknown => true,
        E::Chat | E::Embeddings | E::DocumentsRead => matches!(role, Role::User | Role::Admin),
        E::DocumentsWrite | E::Keys | E::PolicyReload => role == Role::Admin,
        E::AuditRead | E::CostsRead => role == Role::Auditor,
        E::Metrics => matches!(role, Role::Admin | Role::Auditor),
        E::ReadOnlyWrite => false,
    }
}

/// Whether `name` is a valid group or tenant name: 1–64 characters of lowercase letters, digits,
/// `-`, `_` or `.` (groups are stored lowercased and compared exactly).
pub fn valid_group(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Trims and lowercases group names as ingestion does, refusing invalid ones by name.
pub fn normalise_groups(groups: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        let g = g.trim().to_lowercase();
        if g.is_empty() {
            continue;
        }
        if !valid_group(&g) {
            return Err(format!(
                "group {:?} must be 1-64 characters of letters, digits, '-', '_' or '.'",
                g.chars().take(64).collect::<String>()
            ));
        }
        if !out.contains(&g) {
            out.push(g);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        for r in [Role::User, Role::Admin, Role::Auditor] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!(format!("{:<6}|", Role::User), "user  |");
        let e = "root".parse::<Role>().unwrap_err();
        assert!(e.contains("\"root\"") && e.contains("user, admin or auditor"), "{e}");
    }

    #[test]
    fn routes_classify_on_path_boundaries() {
        let cases = [
            ("GET", "/healthz", Endpoint::Open),
            ("GET", "/readyz", Endpoint::Open),
            ("GET", "/openapi.json", Endpoint::Open),
            ("GET", "/metrics", Endpoint::Metrics),
            ("POST", "/v1/chat/completions", Endpoint::Chat),
            ("POST", "/v1/embeddings", Endpoint::Embeddings),
            ("GET", "/v1/models", Endpoint::Models),
            ("GET", "/v1/documents", Endpoint::DocumentsRead),
            ("HEAD", "/v1/documents/doc_1", Endpoint::DocumentsRead),
            ("POST", "/v1/documents", Endpoint::DocumentsWrite),
            ("DELETE", "/v1/documents/doc_1", Endpoint::DocumentsWrite),
            ("GET", "/v1/documentsX", Endpoint::Unknown),
            ("POST", "/v1/keys", Endpoint::Keys),
            ("POST", "/v1/policy/reload", Endpoint::PolicyReload),
            ("GET", "/v1/audit/records", Endpoint::AuditRead),
            ("POST", "/v1/audit", Endpoint::ReadOnlyWrite),
            ("GET", "/v1/costs", Endpoint::CostsRead),
            ("DELETE", "/v1/costs/x", Endpoint::ReadOnlyWrite),
            ("GET", "/healthz/", Endpoint::Unknown),
            ("GET", "/", Endpoint::Unknown),
        ];
        for (method, path, want) in cases {
            assert_eq!(classify(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn the_role_table() {
        use Endpoint as E;
        // (endpoint, user, admin, auditor)
        let table = [
            (E::Open, true, true, true),
            (E::Models, true, true, true),
            (E::Unknown, true, true, true),
            (E::Chat, true, true, false),
            (E::Embeddings, true, true, false),
            (E::DocumentsRead, true, true, false),
            (E::DocumentsWrite, false, true, false),
            (E::Keys, false, true, false),
            (E::PolicyReload, false, true, false),
            (E::AuditRead, false, false, true),
            (E::CostsRead, false, false, true),
            (E::Metrics, false, true, true),
            (E::ReadOnlyWrite, false, false, false),
        ];
        for (e, user, admin, auditor) in table {
            assert_eq!(authorize(Role::User, e), user, "user {e:?}");
            assert_eq!(authorize(Role::Admin, e), admin, "admin {e:?}");
            assert_eq!(authorize(Role::Auditor, e), auditor, "auditor {e:?}");
        }
    }

    #[test]
    fn a_user_without_groups_sees_tenant_wide_documents_only() {
        let user = Principal { key_id: Some("k".into()), tenant: "acme".into(), role: Role::User, groups: vec![] };
        let f = user.filter(None);
        assert!(f.admits("acme", "default", &[]));
        assert!(!f.admits("acme", "default", &["hr".into()]));
        assert!(!f.admits("other", "default", &[]));
        let admin = Principal { role: Role::Admin, ..user.clone() };
        assert!(admin.filter(None).admits("acme", "default", &["hr".into()]));
        assert!(!admin.filter(None).admits("other", "default", &[]));
        let hr = Principal { groups: vec!["hr".into()], ..user };
        assert!(hr.filter(None).admits("acme", "default", &["hr".into(), "finance".into()]));
        assert!(!hr.filter(None).admits("acme", "default", &["finance".into()]));
        assert_eq!(Principal::anonymous().filter(None), AccessFilter::default());
    }

    #[test]
    fn groups_are_normalised_and_checked() {
        assert_eq!(normalise_groups(&[" HR ".into(), "hr".into(), "".into(), "eng".into()]).unwrap(), ["hr", "eng"]);
        let e = normalise_groups(&["a b".into()]).unwrap_err();
        assert!(e.contains("\"a b\""), "{e}");
        assert!(normalise_groups(&["x".repeat(65)]).is_err());
    }
}
