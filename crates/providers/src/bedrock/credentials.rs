//! AWS credentials: the type, and where they are found: the environment, then the shared
//! `credentials` and `config` files, as the AWS CLI and SDKs read them.
//!
//! Only static keys are supported (an access key id, a secret access key and an optional session
//! token). Profiles that get their keys some other way (SSO, `role_arn`, `credential_process`,
//! instance metadata) are refused with a message saying so, rather than half-supported.
//! The INI parsing and the resolution order are pure functions of the environment and the file
//! contents; only `resolve_credentials` touches the real environment and disk.

use std::fmt;
use std::path::{Path, PathBuf};

/// An AWS access key with its secret and, for temporary credentials, a session token.
///
/// `Debug` shows only the first four characters of the access key id (`AKIA` for a long-term
/// key, `ASIA` for a temporary one); the secret and the token never appear.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.filter(|t| !t.is_empty()),
        }
    }

    /// The access key id. It identifies the key but is not a secret.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// Whether these are temporary credentials with a session token.
    pub fn has_session_token(&self) -> bool {
        self.session_token.is_some()
    }

    /// True when every part can be sent in an HTTP header (visible ASCII).
    pub(crate) fn is_sendable(&self) -> bool {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        // The secret is never sent, only used as an HMAC key, so it need only be present.
        ok(&self.access_key_id) && !self.secret_access_key.is_empty() && self.session_token.as_deref().is_none_or(ok)
    }

    pub(crate) fn to_aws(&self) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "perimeter",
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("Credentials")
            .field("access_key_id", &format_args!("{prefix}…"))
            .field("secret_access_key", &format_args!("[redacted]"))
            .field("session_token", &self.session_token.as_ref().map(|_| format_args!("[redacted]")))
            .finish()
    }
}

/// Finds credentials, in this order:
///
/// 1. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` if set);
/// 2. the profile in the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
///    `~/.aws/credentials`, sections `[name]`) and the config file (`AWS_CONFIG_FILE`, else
///    `~/.aws/config`, sections `[profile name]`, and `[default]`); the credentials file wins
///    where both set a key.
///
/// The environment variables are skipped when `profile` is given (an explicit `aws_profile`).
/// The profile is `profile`, else `AWS_PROFILE`, else `default`. Errors name variables, files
/// and profiles, never a key or a line of a file.
pub fn resolve_credentials(profile: Option<&str>) -> Result<Credentials, String> {
    let env = |name: &str| std::env::var(name).ok();
    let read = |path: &Path| match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.kind().to_string()),
    };
    resolve(profile, &env, &read)
}

/// `resolve_credentials` with the environment and the file system as inputs. `read` returns
/// `Ok(None)` for a file that does not exist, and an error (without the contents) otherwise.
pub(crate) fn resolve(
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> Result<Option<String>, String>,
) -> Result<Credentials, String> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    // A profile named in the configuration is an explicit choice and wins over the environment
    // (as `--profile` does for the AWS CLI); without one, the environment comes first.
    let from_env =
        if profile.is_some() { (None, None) } else { (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) };
    match from_env {
        (Some(id), Some(secret)) => {
            return Ok(Credentials::new(id.trim(), secret.trim(), var("AWS_SESSION_TOKEN").map(|t| t.trim().into())))
        }
        (Some(_), None) => return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into()),
        (None, Some(_)) => return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into()),
        (None, None) => {}
    }

    let profile = match profile {
        Some(p) => p.to_string(),
        None => var("AWS_PROFILE").unwrap_or_else(|| "default".into()),
    };
    let home = var("HOME").or_else(|| var("USERPROFILE")).map(PathBuf::from);
    let path = |override_var: &str, default: &str| -> Option<PathBuf> {
        match var(override_var) {
            Some(p) => Some(expand_home(&p, home.as_deref())),
            None => home.as_ref().map(|h| h.join(".aws").join(default)),
        }
    };
    let credentials_path = path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_path = path("AWS_CONFIG_FILE", "config");

    let mut found = Properties::default();
    let mut sources = Vec::new();
    // Config first, then credentials, so that the credentials file's values win.
    for (path, kind) in [(&config_path, FileKind::Config), (&credentials_path, FileKind::Credentials)] {
        let Some(path) = path else { continue };
        let shown = path.display();
        let Some(text) = read(path).map_err(|e| format!("could not read the AWS {kind} file {shown}: {e}"))? else {
            continue;
        };
        let sections = parse_ini(&text).map_err(|line| {
            format!("the AWS {kind} file {shown} is malformed at line {line} (expected [section] or key = value)")
        })?;
        let mut in_file = false;
        for section in sections.iter().filter(|s| kind.section_is(&s.name, &profile)) {
            in_file = true;
            found.merge(&section.properties);
        }
        if in_file {
            sources.push(format!("{shown}"));
        }
    }

    if sources.is_empty() {
        let looked: Vec<String> =
            [&credentials_path, &config_path].into_iter().flatten().map(|p| p.display().to_string()).collect();
        let looked = if looked.is_empty() { "no files (HOME is not set)".into() } else { looked.join(" and ") };
        return Err(format!(
            "no AWS credentials: AWS_ACCESS_KEY_ID is not set and profile {profile:?} is not in {looked}"
        ));
    }
    match (found.get("aws_access_key_id"), found.get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, found.get("aws_session_token").map(str::to_owned))),
        _ => {
            let other = [
                "sso_session",
                "sso_start_url",
                "role_arn",
                "credential_process",
                "credential_source",
                "web_identity_token_file",
            ]
            .into_iter()
            .find(|k| found.get(k).is_some());
            let why = match other {
                Some(key) => format!(" (it uses {key}, which Perimeter does not support; export static keys or use a profile that has them)"),
                None => String::new(),
            };
            Err(format!(
                "AWS profile {profile:?} in {} has no aws_access_key_id and aws_secret_access_key{why}",
                sources.join(" and ")
            ))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum FileKind {
    Config,
    Credentials,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Config => "config",
            FileKind::Credentials => "credentials",
        })
    }
}

impl FileKind {
    /// Whether a section header names `profile`: `[name]` in the credentials file; `[profile
    /// name]` in the config file, where the default profile may also be plain `[default]`.
    fn section_is(self, section: &str, profile: &str) -> bool {
        match self {
            FileKind::Credentials => section == profile,
            FileKind::Config => match section.strip_prefix("profile") {
                Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim() == profile,
                _ => profile == "default" && section == "default",
            },
        }
    }
}

/// `~/x` → `$HOME/x`, as the AWS CLI does for its file variables.
fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// The `key = value` pairs of one section, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Properties(Vec<(String, String)>);

impl Properties {
    /// The last value set for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn merge(&mut self, other: &Properties) {
        self.0.extend(other.0.iter().cloned());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    /// The text between the brackets, trimmed: `default`, `profile dev`.
    pub(crate) name: String,
    pub(crate) properties: Properties,
}

/// Parses the INI dialect of AWS's shared files: `[section]` headers, `key = value` lines,
/// comment lines starting with `#` or `;`, blank lines. Keys are lower-cased. An indented line
/// under a key with an empty value is a nested setting (`s3 =\n  max_concurrent_requests = 20`)
/// and is skipped. On error, returns the 1-based line number: the line itself may hold a secret.
pub(crate) fn parse_ini(text: &str) -> Result<Vec<Section>, usize> {
    let mut sections: Vec<Section> = Vec::new();
    let mut nested = false;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let indented = raw.starts_with(char::is_whitespace);
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or(number)?.trim();
            if name.is_empty() {
                return Err(number);
            }
            sections.push(Section { name: name.to_string(), properties: Properties::default() });
            nested = false;
            continue;
        }
        let section = sections.last_mut().ok_or(number)?;
        if indented && nested {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or(number)?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(number);
        }
        let value = value.trim();
        nested = value.is_empty();
        section.properties.0.push((key, value.to_string()));
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        Properties(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn the_ini_dialect_of_the_aws_files_parses() {
        let text = "# comment\n; another\n\n[default]\naws_access_key_id = AKIA1\nAWS_Secret_Access_Key=s1  \n\n[profile dev]\nregion = eu-west-1\ns3 =\n  max_concurrent_requests = 20\n  addressing_style = path\noutput = json\n[ spaced ]\n";
        let sections = parse_ini(text).unwrap();
        assert_eq!(
            sections,
            [
                Section {
                    name: "default".into(),
                    properties: props(&[("aws_access_key_id", "AKIA1"), ("aws_secret_access_key", "s1")])
                },
                Section {
                    name: "profile dev".into(),
                    properties: props(&[("region", "eu-west-1"), ("s3", ""), ("output", "json")])
                },
                Section { name: "spaced".into(), properties: props(&[]) },
            ]
        );
    }

    #[test]
    fn malformed_lines_report_only_their_number() {
        assert_eq!(parse_ini("[default]\naws_secret_access_key\n"), Err(2));
        assert_eq!(parse_ini("key = before any section\n"), Err(1));
        assert_eq!(parse_ini("[default\n"), Err(1));
        assert_eq!(parse_ini("[]\n"), Err(1));
        assert_eq!(parse_ini("[a]\n = value\n"), Err(2));
        // Windows line endings and a value containing `=` are fine.
        let sections = parse_ini("[a]\r\nk = x=y\r\n").unwrap();
        assert_eq!(sections[0].properties.get("k"), Some("x=y"));
    }

    struct World {
        env: HashMap<&'static str, String>,
        files: HashMap<PathBuf, Result<String, String>>,
    }

    impl World {
        fn new(env: &[(&'static str, &str)], files: &[(&str, &str)]) -> Self {
            Self {
                env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                files: files.iter().map(|(p, t)| (PathBuf::from(p), Ok(t.to_string()))).collect(),
            }
        }

        fn resolve(&self, profile: Option<&str>) -> Result<Credentials, String> {
            let env = |name: &str| self.env.get(name).cloned();
            let read = |path: &Path| self.files.get(path).cloned().transpose();
            resolve(profile, &env, &read)
        }
    }

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = SECRET-DEFAULT\n\n[dev]\naws_access_key_id = ASIADEV\naws_secret_access_key = SECRET-DEV\naws_session_token = TOKEN-DEV\n";
    const CONFIG: &str = "[default]\nregion = us-east-1\n\n[profile ops]\naws_access_key_id = AKIAOPS\naws_secret_access_key = SECRET-OPS\n\n[profile sso]\nsso_session = corp\n\n[profile dev]\naws_secret_access_key = SECRET-FROM-CONFIG\n";

    fn files() -> Vec<(&'static str, &'static str)> {
        vec![("/home/u/.aws/credentials", CREDENTIALS), ("/home/u/.aws/config", CONFIG)]
    }

    #[test]
    fn the_environment_comes_first_unless_a_profile_is_named() {
        let world = World::new(
            &[
                ("HOME", "/home/u"),
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "SECRET-ENV"),
                ("AWS_SESSION_TOKEN", "T"),
            ],
            &files(),
        );
        assert_eq!(world.resolve(None), Ok(Credentials::new("AKIAENV", "SECRET-ENV", Some("T".into()))));
        assert_eq!(world.resolve(Some("dev")), Ok(Credentials::new("ASIADEV", "SECRET-DEV", Some("TOKEN-DEV".into()))));
        let half = World::new(&[("AWS_ACCESS_KEY_ID", "AKIAENV")], &files());
        assert_eq!(half.resolve(None), Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into()));
    }

    #[test]
    fn profiles_come_from_the_argument_then_aws_profile_then_default() {
        let world = World::new(&[("HOME", "/home/u")], &files());
        assert_eq!(world.resolve(None), Ok(Credentials::new("AKIADEFAULT", "SECRET-DEFAULT", None)));
        // The credentials file wins over the config file for the same profile.
        assert_eq!(world.resolve(Some("dev")), Ok(Credentials::new("ASIADEV", "SECRET-DEV", Some("TOKEN-DEV".into()))));
        // `[profile ops]` in the config file.
        assert_eq!(world.resolve(Some("ops")), Ok(Credentials::new("AKIAOPS", "SECRET-OPS", None)));
        let world = World::new(&[("HOME", "/home/u"), ("AWS_PROFILE", "ops")], &files());
        assert_eq!(world.resolve(None).unwrap().access_key_id(), "AKIAOPS");
        assert_eq!(world.resolve(Some("dev")).unwrap().access_key_id(), "ASIADEV");
    }

    #[test]
    fn file_locations_can_be_overridden() {
        let world = World::new(
            &[
                ("HOME", "/home/u"),
                ("AWS_SHARED_CREDENTIALS_FILE", "~/elsewhere/creds"),
                ("AWS_CONFIG_FILE", "/etc/aws-config"),
            ],
            &[
                ("/home/u/elsewhere/creds", "[x]\naws_access_key_id=A\naws_secret_access_key=B\n"),
                ("/etc/aws-config", CONFIG),
            ],
        );
        assert_eq!(world.resolve(Some("x")), Ok(Credentials::new("A", "B", None)));
        assert_eq!(world.resolve(Some("ops")).unwrap().access_key_id(), "AKIAOPS");
        // The default files are no longer read.
        assert!(world.resolve(Some("default")).is_err());
    }

    #[test]
    fn errors_say_what_is_missing_without_secrets() {
        let world = World::new(&[("HOME", "/home/u")], &files());
        let error = world.resolve(Some("nope")).unwrap_err();
        assert_eq!(
            error,
            "no AWS credentials: AWS_ACCESS_KEY_ID is not set and profile \"nope\" is not in /home/u/.aws/credentials and /home/u/.aws/config"
        );
        let error = world.resolve(Some("sso")).unwrap_err();
        assert!(error.contains("profile \"sso\" in /home/u/.aws/config has no aws_access_key_id"), "{error}");
        assert!(error.contains("sso_session"), "{error}");

        let broken = World::new(
            &[("HOME", "/home/u")],
            &[("/home/u/.aws/credentials", "[default]\naws_secret_access_key SECRET-X\n")],
        );
        let error = broken.resolve(None).unwrap_err();
        assert_eq!(error, "the AWS credentials file /home/u/.aws/credentials is malformed at line 2 (expected [section] or key = value)");
        assert!(!error.contains("SECRET"));

        let mut unreadable = World::new(&[("HOME", "/home/u")], &[]);
        unreadable.files.insert("/home/u/.aws/config".into(), Err("permission denied".into()));
        assert_eq!(
            unreadable.resolve(None).unwrap_err(),
            "could not read the AWS config file /home/u/.aws/config: permission denied"
        );
        let homeless = World::new(&[], &[]);
        assert!(homeless.resolve(None).unwrap_err().contains("no files (HOME is not set)"));
    }

    #[test]
    fn debug_never_shows_the_secret_or_token() {
        let credentials =
            Credentials::new("AKIAIOSFODNN7EXAMPLE", "SECRET-DO-NOT-LEAK", Some("TOKEN-DO-NOT-LEAK".into()));
        for shown in [format!("{credentials:?}"), format!("{credentials:#?}")] {
            assert!(!shown.contains("DO-NOT-LEAK"), "{shown}");
            assert!(!shown.contains("IOSFODNN7"), "{shown}");
            assert!(shown.contains("AKIA…") && shown.contains("[redacted]"), "{shown}");
        }
        assert!(credentials.is_sendable());
        assert!(!Credentials::new("a b", "s", None).is_sendable());
        assert!(!Credentials::new("a", "", None).is_sendable());
        assert!(!Credentials::new("a", "s", Some("t\n".into())).is_sendable());
        assert!(!Credentials::new("a", "s", None).has_session_token());
        assert!(!Credentials::new("a", "s", Some(String::new())).has_session_token());
    }
}
