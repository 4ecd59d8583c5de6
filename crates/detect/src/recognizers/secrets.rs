//! Credentials, in the style of gitleaks and detect-secrets: keys with fixed prefixes (AWS,
//! GitHub, Slack, Stripe, Google, OpenAI), JWTs that decode, PEM private key blocks, password
//! assignments and URL userinfo, and high-entropy values assigned to secret-looking names.
//!
//! Documented example keys (values containing "EXAMPLE", "sample", "dummy") and placeholders
//! (`sk_live_xxxx…`, `xoxb-your-token-here`, bodies with too little variety to be random) are
//! not reported: they are in docs, templates and `.env.example` files, not credentials.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use perimeter_types::EntityKind;
use regex::Regex;

use super::{byte_at, compile, finding, is_placeholder, is_placeholder_key};
use crate::context::{after, before};
use crate::scope::{cued_lines, find_in_cued_lines, find_in_lines};
use crate::validate::entropy;
use crate::{DetectError, Finding, NormalizedText, Recognizer};

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    let aws_access = r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b";
    all.push(Box::new(Prefixed {
        name: "aws-access-key",
        kind: EntityKind::AwsAccessKey,
        re: compile("aws-access-key", aws_access)?,
        triggers: &["(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"],
        rate: |_| (0.95, "aws-prefix"),
    }));
    all.push(Box::new(Prefixed {
        name: "github-token",
        kind: EntityKind::GithubToken,
        re: compile("github-token", r"\b(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b")?,
        triggers: &["gh[pousr]_[A-Za-z0-9]{36}", "github_pat_"],
        rate: |_| (0.95, "github-prefix"),
    }));
    all.push(Box::new(Prefixed {
        name: "slack-token",
        kind: EntityKind::SlackToken,
        re: compile(
            "slack-token",
            r"\b(?:xox[baprs]|xoxe\.xox[bp]|xoxe|xapp)-[0-9A-Za-z]+(?:-[0-9A-Za-z]+)+|https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_]{6,}/[A-Za-z0-9_]{6,}/[A-Za-z0-9_]{16,}",
        )?,
        triggers: &["xox[abeprs][-.]", "xapp-", r"hooks\.slack\.com/"],
        rate: |s| if s.len() >= 20 { (0.95, "slack-prefix") } else { (0.0, "") },
    }));
    all.push(Box::new(Prefixed {
        name: "stripe-key",
        kind: EntityKind::StripeKey,
        re: compile("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,247}\b")?,
        triggers: &["[sr]k_(?:live|test)_"],
        // Test-mode keys grant access to a real account's test data.
        rate: |s| if s.contains("_live_") { (0.95, "stripe-prefix") } else { (0.85, "stripe-prefix") },
    }));
    all.push(Box::new(Prefixed {
        name: "google-api-key",
        kind: EntityKind::GoogleApiKey,
        re: compile("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}")?,
        triggers: &["AIza[0-9A-Za-z_\\-]{35}"],
        rate: |_| (0.95, "google-prefix"),
    }));
    all.push(Box::new(Prefixed {
        name: "openai-api-key",
        kind: EntityKind::OpenaiApiKey,
        // Stripe uses `sk_`; OpenAI uses `sk-`.
        re: compile("openai-api-key", r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|[A-Za-z0-9]{48})")?,
        triggers: &["sk-"],
        rate: |s| {
            if s.contains("T3BlbkFJ") {
                (0.95, "openai-marker")
            } else if s.starts_with("sk-proj-") || s.starts_with("sk-svcacct-") || s.starts_with("sk-admin-") {
                (0.9, "openai-prefix")
            } else {
                (0.7, "openai-shape")
            }
        },
    }));
    all.push(Box::new(Prefixed {
        name: "sendgrid-key",
        kind: EntityKind::GenericSecret,
        re: compile("sendgrid-key", r"\bSG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{24,64}")?,
        triggers: &[r"SG\.[A-Za-z0-9_\-]{16,32}\."],
        rate: |_| (0.9, "sendgrid-prefix"),
    }));
    all.push(Box::new(Prefixed {
        name: "stripe-webhook-secret",
        kind: EntityKind::GenericSecret,
        re: compile("stripe-webhook-secret", r"\bwhsec_[A-Za-z0-9]{24,64}\b")?,
        triggers: &["whsec_"],
        rate: |_| (0.9, "whsec-prefix"),
    }));
    all.push(Box::new(Prefixed {
        // HashiCorp Vault service, batch and recovery tokens.
        name: "vault-token",
        kind: EntityKind::GenericSecret,
        re: compile("vault-token", r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,256}\b")?,
        triggers: &[r"hv[sbr]\."],
        rate: |_| (0.9, "vault-prefix"),
    }));
    all.push(Box::new(AwsSecretKey {
        key: compile(
            "aws-secret-key",
            r#"(?i)\b(?:aws[A-Za-z0-9_\-.]{0,20}secret[A-Za-z0-9_\-.]*|secret[_\-]?access[_\-]?key)["']?[ \t]*(?:=|:=|:|=>|,)?[ \t]*"#,
        )?,
        access: compile("aws-secret-key", aws_access)?,
        value: compile("aws-secret-key", r"[A-Za-z0-9/+]{40}")?,
    }));
    all.push(Box::new(Jwt {
        re: compile("jwt", r"\beyJ[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]*={0,2}")?,
    }));
    all.push(Box::new(PrivateKey {
        begin: compile(
            "private-key",
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
        )?,
    }));
    all.push(Box::new(Password {
        // Every assignment, flag and prose match holds one of these or of `cue_foreign`.
        cue: compile(
            "password",
            "(?i)pass|pwd|pin",
        )?,
        // The password words of other languages, in a cue of their own: joined to the one
        // above, the literals are too many for the vectorised search.
        // The words themselves, so every key the assignment pattern takes has its cue.
        cue_foreign: compile("password", FOREIGN_PASSWORD_WORDS)?,
        // A key name and its separator: `password=`, `"passwd": `, `hasło:`.
        assign: compile(
            "password",
            &format!(r#"(?:\b(?:{FOREIGN_PASSWORD_WORDS})|{PASSWORD_KEY_NAMES})["']?[ \t]*(?:=|:=|:|=>)[ \t]*"#),
        )?,
        // `--password x`, `redis-server --requirepass x`.
        // In an exec-form argument list the value is the next element:
        // `command: ["redis-server", "--requirepass", "…"]`.
        flag: compile(
            "password",
            r#"(?i)--(?:[a-z0-9]+-)*(?:password|passwd|pass|requirepass)(?:[ \t]+|["'][ \t]*,[ \t]*)"#,
        )?,
        prose: compile(
            "password",
            r"(?i)\b(?:password|passcode|passphrase|pin)[ \t]+(?:is[ \t]+now|is|was|issued|(?:re)?set[ \t]+to|changed[ \t]+to)\b[ \t]*:?[ \t]*",
        )?,
        // The user may be empty (`redis://:secret@host`); a password may hold `#`.
        url: compile("password", r"\b[A-Za-z][A-Za-z0-9+.\-]{1,20}://(?u:[^\s:/@?#]){0,64}:(?u:[^\s@/?]){1,128}@")?,
        // One pass for the rarer forms, told apart by their text: `.netrc` (`machine host login
        // me password VALUE`); a command line (`mysql -u root -p'…'`, `docker login -p …`,
        // `sshpass -p …`); a call (PHP `define('DB_PASSWORD', '…')`, Python `auth=("user",
        // "…")`); and prose ("reset it to X", "changed the password to X").
        // A key-value row (`VALUES('smtp_password', '…')`): searched only on lines with a cue,
        // since its leading quote gives the regex no literal to skip ahead with.
        kv_row: compile("password", r#"(?i)['"][a-z0-9_.\-]*(?:password|passwd|pwd)['"][ \t]*,[ \t]*"#)?,
        extra: compile(
            "password",
            r#"(?m)(?:^|[ \t])password[ \t]+|\b(?:mysql|mysqldump|mysqladmin|mariadb|docker|podman|psql|pg_dump|mongo|mongosh|mongodump|redis-cli|sshpass|htpasswd|smbclient|ldapsearch)\b(?u:[^\n])*?[ \t]-p[ \t]?|(?i:\bdefine\([ \t]*['"][A-Z0-9_]*(?:PASSWORD|PASSWD|PASS|PWD)['"][ \t]*,[ \t]*|\b(?:auth|HTTPBasicAuth|HTTPDigestAuth|BasicAuth)[ \t]*(?:=[ \t]*)?\([ \t]*['"](?u:[^'"\n]){1,64}['"][ \t]*,[ \t]*)|(?i:\b(?:reset|changed|set|updated)[ \t]+(?:it|(?:the|my|your|his|her|their)[ \t]+password)(?:[ \t]+[a-z]+){0,2}?[ \t]+to[ \t]+)"#,
        )?,
    }));
    all.push(Box::new(GenericSecret {
        // Every key name holds one of these.
        cue: compile("generic-secret", "(?i)token|secret|key|auth|credential")?,
        assign: compile("generic-secret", SECRET_KEY)?,
        define_cue: compile("generic-secret", r"define\(")?,
        define: compile(
            "generic-secret",
            r#"\bdefine\([ \t]*['"][A-Z0-9_]*(?:_KEY|_SALT|_SECRET|_TOKEN)['"][ \t]*,[ \t]*"#,
        )?,
        auth: compile(
            "generic-secret",
            r#"(?i)(?:\bauthorization["']?[ \t]*[:=][ \t]*["']?(?:bearer|basic|token|bot)[ \t]+|\bbearer[ \t]+)"#,
        )?,
    }));
    Ok(())
}

/// A key with a fixed prefix. `rate` gives the score and evidence for a match (a score below
/// the minimum drops it).
struct Prefixed {
    name: &'static str,
    kind: EntityKind,
    re: Regex,
    triggers: &'static [&'static str],
    rate: fn(&str) -> (f32, &'static str),
}

impl Recognizer for Prefixed {
    fn name(&self) -> &'static str {
        self.name
    }
    fn kinds(&self) -> &[EntityKind] {
        std::slice::from_ref(&self.kind)
    }
    fn triggers(&self) -> &[&'static str] {
        self.triggers
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            // Token alphabets include `-` and `_`, which `\b` does not see as word bytes.
            if byte_at(t, m.end()).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                continue;
            }
            let (score, evidence) = (self.rate)(m.as_str());
            if score > 0.0 && !is_placeholder_key(m.as_str()) {
                out.push(finding(self.kind, m.start(), m.end(), score, &[evidence]));
            }
        }
    }
}

struct AwsSecretKey {
    key: Regex,
    access: Regex,
    value: Regex,
}

impl AwsSecretKey {
    /// A standalone 40-character base64 token with mixed case, a digit or symbol, and entropy.
    fn secret_at(&self, t: &str, from: usize, window: &str, must_start_at_0: bool) -> Option<(usize, usize)> {
        // `=` may pad the end of a base64 run but never starts one (it is the `KEY=` separator).
        let b64 = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+'));
        self.value.find_iter(window).take(8).find_map(|m| {
            let (s, e) = (from + m.start(), from + m.end());
            if must_start_at_0 && m.start() != 0 {
                return None;
            }
            let v = m.as_str();
            let standalone = !b64(s.checked_sub(1).and_then(|i| byte_at(t, i)))
                && !b64(byte_at(t, e))
                && byte_at(t, e) != Some(b'=');
            let mixed = v.bytes().any(|b| b.is_ascii_uppercase())
                && v.bytes().any(|b| b.is_ascii_lowercase())
                && v.bytes().any(|b| b.is_ascii_digit() || b == b'/' || b == b'+');
            (standalone && mixed && entropy(v) >= 3.5).then_some((s, e))
        })
    }

    fn push(out: &mut Vec<Finding>, t: &str, (s, e): (usize, usize), how: &'static str) {
        if !is_placeholder_key(&t[s..e]) {
            out.push(finding(EntityKind::AwsSecretKey, s, e, 0.9, &[how]));
        }
    }
}

impl Recognizer for AwsSecretKey {
    fn name(&self) -> &'static str {
        "aws-secret-key"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::AwsSecretKey]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"(?i)aws[A-Za-z0-9_\-.]{0,20}secret|secret[_\-]?access[_\-]?key", "(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for k in self.key.find_iter(t) {
            // The value right after the key name, possibly quoted.
            let mut at = k.end();
            if matches!(byte_at(t, at), Some(b'"' | b'\'')) {
                at += 1;
            }
            if let Some(span) = self.secret_at(t, at, after(t, at, 40), true) {
                Self::push(out, t, span, "key-name");
            }
        }
        for a in self.access.find_iter(t) {
            // Credentials files and snippets put the secret right after the access key id.
            if let Some(span) = self.secret_at(t, a.end(), after(t, a.end(), 200), false) {
                Self::push(out, t, span, "after-access-key");
            }
        }
    }
}

struct Jwt {
    re: Regex,
}

/// A base64url segment decodes to a JSON object (padding tolerated).
fn json_object(segment: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

impl Recognizer for Jwt {
    fn name(&self) -> &'static str {
        "jwt"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Jwt]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"eyJ[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            let mut parts = m.as_str().splitn(3, '.');
            let (Some(header), Some(payload)) = (parts.next(), parts.next()) else { continue };
            // Tokens are kilobytes; refuse to decode megabytes.
            if m.len() > 64 * 1024 {
                continue;
            }
            let valid = json_object(header).is_some_and(|h| h.contains_key("alg")) && json_object(payload).is_some();
            if valid {
                out.push(finding(EntityKind::Jwt, m.start(), m.end(), 0.95, &["jwt-decode"]));
            }
        }
    }
}

struct PrivateKey {
    begin: Regex,
}

/// Characters of a PEM body: base64, line breaks (also as literal `\n` in JSON strings) and
/// the `Proc-Type:`/`DEK-Info:`/`Version:` header lines.
fn pem_body_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(b, b'+' | b'/' | b'=' | b'\\' | b':' | b',' | b'-' | b' ' | b'\t' | b'\r' | b'\n')
}

impl Recognizer for PrivateKey {
    fn name(&self) -> &'static str {
        "private-key"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::PrivateKey]
    }
    fn triggers(&self) -> &[&'static str] {
        &["-----BEGIN [A-Z ]*PRIVATE KEY"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for b in self.begin.find_iter(t) {
            let label = &b.as_str()["-----BEGIN ".len()..b.as_str().len() - "-----".len()];
            // The body ends at the next "-----", which bounds the scan by the next marker (a
            // run of BEGIN lines stays linear).
            let body_end = t[b.end()..].find("-----").map_or(t.len(), |i| b.end() + i);
            let body = &t[b.end()..body_end];
            let base64_chars = body.bytes().filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/')).count();
            let end_marker = format!("-----END {label}-----");
            if t[body_end..].starts_with(&end_marker) && body.bytes().all(pem_body_byte) && base64_chars >= 32 {
                let end = body_end + end_marker.len();
                out.push(finding(EntityKind::PrivateKey, b.start(), end, 0.99, &["pem"]));
                continue;
            }
            // No END line: a truncated key is still a key, up to where the body stops.
            let valid = body.bytes().take_while(|&c| pem_body_byte(c)).count();
            let kept = body[..valid].trim_end();
            let kept_b64 = kept.bytes().filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/')).count();
            if kept_b64 >= 64 {
                out.push(finding(EntityKind::PrivateKey, b.start(), b.end() + kept.len(), 0.9, &["pem-truncated"]));
            }
        }
    }
}

/// "Password" in Polish, Spanish, German, Dutch, Portuguese, Swedish and Finnish, in lower
/// case, capitalised and in capitals: case-sensitive, since under `(?i)` the variants are too
/// many for the vectorised literal search that the cue relies on.
const FOREIGN_PASSWORD_WORDS: &str = "[Hh]as(?:ł|l)o|HAS(?:Ł|L)O|[Cc]ontrase(?:ñ|n)a|CONTRASE(?:Ñ|N)A|[Kk]ennwort|KENNWORT|[Ww]achtwoord|WACHTWOORD|[Ss]enha|SENHA|[Ll](?:ö|o)senord|L(?:Ö|O)SENORD|[Ss]alasana|SALASANA";

/// Password key names: `password`, `DB_PASSWORD`, `passwd`, `userPassword`, `smtp.pass`. With
/// [`FOREIGN_PASSWORD_WORDS`] and a separator they make the assignment pattern (see `add`).
const PASSWORD_KEY_NAMES: &str = r#"\b(?i:(?:[a-z0-9]+[_\-.])*(?:password|passwd|passphrase|pwd|passwort|mot[ \t]+de[ \t]+passe)|(?:[a-z0-9]+[_\-.])+pass)|\b[A-Za-z][A-Za-z0-9]*(?:Password|Passwd|Passphrase|Pwd|Pass)"#;

/// A secret-looking key name and its separator: `api_key=`, `"client_secret": `, `authToken:`,
/// `"SessionToken":` (PascalCase, as in AWS and .NET JSON),
/// `JWT_SIGNING_KEY:`, `routingKey =`. (A key *id*, like a service account's `private_key_id`, names
/// a key without being one.)
const SECRET_KEY: &str = r#"(?:\b(?i:_*(?:[a-z0-9]+[_\-.])*(?:access[_\-]?token|refresh[_\-]?token|auth[_\-]?token|api[_\-]?token|bearer[_\-]?token|token|client[_\-]?secret|secret[_\-]?key|secret|api[_\-]?key|apikey|auth|credentials?|private[_\-]?key|access[_\-]?key|(?:signing|encryption|encrypt|master|routing|license|licence|integration|webhook|hmac|session|jwt|shared|consumer|subscription|deploy|admin|account|storage|ingest|ingestion|write|service|app|client|cookie|cipher|aes|crypto|decryption|verification|dsn)[_\-]?key))|\b[A-Za-z][A-Za-z0-9]*(?:Token|Secret|ApiKey|Apikey|Auth|Credentials?|PrivateKey|AccessKey|SecretKey|SigningKey|EncryptionKey|MasterKey|RoutingKey|LicenseKey|WebhookKey|HmacKey|SessionKey|JwtKey|SharedKey|ConsumerKey|SubscriptionKey|DeployKey|AccountKey|StorageKey|IngestKey|WriteKey|ServiceKey|AppKey|ClientKey|CookieKey))["']?[ \t]*(?:=|:=|:|=>)[ \t]*"#;

/// A value after a key: quoted (up to the closing quote on the same line) or bare (up to
/// whitespace or a delimiter). Offsets are into the text.
#[derive(Debug, Clone, Copy)]
struct Value {
    start: usize,
    end: usize,
    quoted: bool,
}

/// A key inside a shell or Compose parameter expansion (`${DB_PASSWORD:?set it in .env}`,
/// `${DB_PASSWORD:-changeme}`): its `:` is an operator, not an assignment. Only a default
/// (`:-`, `:=`) is a value, without its operator; an error message (`:?`) or an alternative
/// (`:+`) is not. Any other key keeps its value.
fn expansion_default(t: &str, key_start: usize, v: Value) -> Option<Value> {
    let name = t.as_bytes()[..key_start].iter().rev().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
    if !t[..key_start - name].ends_with("${") || v.quoted {
        return Some(v);
    }
    match t.as_bytes().get(v.start) {
        Some(b'-' | b'=') => {
            // The default ends at the expansion's closing brace.
            let end = t[v.start..v.end].find('}').map_or(v.end, |i| v.start + i);
            (end > v.start + 1).then_some(Value { start: v.start + 1, end, quoted: false })
        }
        _ => None,
    }
}

fn read_value(t: &str, pos: usize) -> Option<Value> {
    let b = t.as_bytes();
    let q = *b.get(pos)?;
    if matches!(q, b'"' | b'\'' | b'`') {
        // Long enough for an STS session token (about 1 KB), bounded all the same.
        let limit = (pos + 1 + 4096).min(b.len());
        let mut i = pos + 1;
        while i < limit {
            match b[i] {
                b'\\' => i += 2,
                b'\n' => return None,
                c if c == q => return (i > pos + 1).then_some(Value { start: pos + 1, end: i, quoted: true }),
                _ => i += 1,
            }
        }
        return None;
    }
    let limit = (pos + 256).min(b.len());
    // `&` ends a value only where a URL query goes on with `name=`.
    let next_param = |i: usize| {
        let rest = &b[i + 1..(i + 33).min(b.len())];
        let name = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
        name > 0 && rest.get(name) == Some(&b'=')
    };
    let mut i = pos;
    while i < limit
        && !matches!(
            b[i],
            b' ' | b'\t' | b'\r' | b'\n' | b',' | b';' | b'"' | b'\'' | b'`' | b'<' | b'>' | b')' | b']' | b'}'
        )
        && !(b[i] == b'&' && next_param(i))
    {
        i += 1;
    }
    while !t.is_char_boundary(i) {
        i -= 1;
    }
    // A sentence-ending full stop is not part of the value.
    if i > pos + 1 && b[i - 1] == b'.' {
        i -= 1;
    }
    (i > pos).then_some(Value { start: pos, end: i, quoted: false })
}

/// A bare value that is code, not a literal: a call, an attribute path, an index, a variable
/// named like the key.
fn is_code(v: &str) -> bool {
    let ident = |s: &str| {
        let mut bytes = s.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let lower = v.to_ascii_lowercase();
    v.contains('(')
        || v.starts_with('=')
        || (v.contains('.') && v.split('.').all(ident))
        || v.contains("[\"")
        || v.contains("['")
        || (snake_case(v) && (lower.contains("pass") || lower.contains("pwd") || lower.contains("secret")))
}

/// `password`, `db_password`: a lower-case name without digits, as variables are named.
fn snake_case(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// A bare identifier followed by `,` `)` (an argument, an enum member) or, after a `:`, by
/// `;` `>` `=` `{` (a type annotation: `log_passwd: __u32,`, `pass: u32 = 2`).
fn is_declaration(t: &str, v: Value) -> bool {
    let s = &t[v.start..v.end];
    let ident = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let next = t[v.end..].trim_start_matches([' ', '\t']).bytes().next();
    let sep = before(t, v.start, 16).trim_end_matches([' ', '\t']).bytes().last();
    ident
        && (matches!(next, Some(b',' | b')'))
            || (sep == Some(b':') && matches!(next, Some(b';' | b'>' | b'=' | b'{' | b'<'))))
}

/// English words that follow "password:" in prose rather than a password.
#[rustfmt::skip]
const PROSE_WORDS: &[&str] = &[
    "must", "should", "is", "was", "will", "can", "cannot", "required", "the", "a", "an", "your", "my", "of", "for",
    "to", "and", "or", "not", "field", "reset", "policy", "expired", "incorrect", "invalid", "changed", "protected",
    "please", "enter", "same", "see", "use", "set", "never", "at", "be", "as", "if", "when", "that", "this", "with",
    "length", "minimum", "strength", "manager", "managers", "hash", "hashes", "hashed", "rotation", "rules",
];

struct Password {
    cue: Regex,
    cue_foreign: Regex,
    assign: Regex,
    flag: Regex,
    prose: Regex,
    url: Regex,
    kv_row: Regex,
    extra: Regex,
}

/// Upper-case words that stand in for credentials in URL templates
/// (`postgres://USER:PASSWORD@host`).
const URL_PLACEHOLDERS: &[&str] = &["PASSWORD", "PASS", "PASSWD", "PWD", "SECRET", "CHANGEME", "YOURPASSWORD"];

impl Password {
    fn push_value(t: &str, v: Value, prose: bool, out: &mut Vec<Finding>) {
        let s = &t[v.start..v.end];
        if s.len() < 3 || is_placeholder(s) || (!v.quoted && (is_code(s) || is_declaration(t, v))) {
            return;
        }
        // Short numbers are enum values and counts, not passwords (PINs have four digits).
        if s.len() < 4 && s.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        let lower = s.to_ascii_lowercase();
        if !v.quoted && PROSE_WORDS.contains(&lower.as_str()) {
            return;
        }
        let (score, how) = if prose {
            // "the password is X": only when X does not read as a word.
            let wordlike = s.bytes().all(|b| b.is_ascii_alphabetic());
            if wordlike || s.len() < 4 {
                return;
            }
            (0.6, "prose")
        } else if v.quoted {
            (0.85, "assignment")
        } else {
            (0.8, "assignment")
        };
        out.push(finding(EntityKind::Password, v.start, v.end, score, &[how]));
    }
}

impl Recognizer for Password {
    fn name(&self) -> &'static str {
        "password"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Password]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r#"(?i)(?:passw(?:or)?d|passphrase|pwd|pass)["']?[ \t]*(?::|=)"#,
            r#"(?i)(?:password|passwd|pwd)['"][ \t]*,"#,
            r"(?i)(?:has(?:ł|Ł|l)o|contrase(?:ñ|n)a|passwort|kennwort|wachtwoord|senha|l(?:ö|Ö|o)senord|salasana|mot[ \t]+de[ \t]+passe)[ \t]*[:=]",
            r"(?i)--[a-z0-9\-]*pass",
            r"(?i)\b(?:password|passcode|passphrase|pin)[ \t]+(?:is|was|issued|set|reset|changed)\b",
            r"://(?u:[^\s/@])*:(?u:[^\s/@])+@",
            r"(?m)(?:^|[ \t])password[ \t]+[!-~]",
            r"\b(?:mysql|mysqldump|mysqladmin|mariadb|docker|podman|psql|pg_dump|mongo|mongosh|mongodump|redis-cli|sshpass|htpasswd|smbclient|ldapsearch)\b",
            r#"(?i)\bdefine\([ \t]*['"][A-Z0-9_]*(?:PASS|PWD)|\b(?:auth|HTTPBasicAuth|HTTPDigestAuth|BasicAuth)[ \t]*(?:=[ \t]*)?\("#,
            r"(?i)\b(?:reset|changed|set|updated)[ \t]+(?:it|(?:the|my|your|his|her|their)[ \t]+password)\b",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        // One cue search for the four line-scoped patterns.
        let mut lines = cued_lines(&self.cue, t);
        let foreign = cued_lines(&self.cue_foreign, t);
        if !foreign.is_empty() {
            lines.extend(foreign);
            lines.sort_unstable();
        }
        for k in find_in_lines(&self.assign, t, lines.iter().copied()) {
            if let Some(v) = read_value(t, k.end()).and_then(|v| expansion_default(t, k.start(), v)) {
                Self::push_value(t, v, false, out);
            }
        }
        for k in find_in_lines(&self.kv_row, t, lines.iter().copied()) {
            if let Some(v) = read_value(t, k.end()).filter(|v| v.quoted) {
                Self::push_value(t, v, false, out);
            }
        }
        for k in find_in_lines(&self.flag, t, lines.iter().copied()) {
            if let Some(v) = read_value(t, k.end()) {
                Self::push_value(t, v, false, out);
            }
        }
        for k in find_in_lines(&self.prose, t, lines.iter().copied()) {
            if let Some(v) = read_value(t, k.end()) {
                Self::push_value(t, v, true, out);
            }
        }
        for k in self.extra.find_iter(t) {
            let ks = k.as_str().trim_start();
            let lower = ks.to_ascii_lowercase();
            let Some(v) = read_value(t, k.end()) else { continue };
            let value = &t[v.start..v.end];
            if ks.starts_with("password") {
                // Only in a `.netrc` (a `machine` entry on this line or a few lines above).
                if before(t, k.start(), 200).contains("machine ") {
                    Self::push_value(t, v, false, out);
                }
            } else if lower.starts_with("define") || ks.ends_with(", ") || ks.ends_with(',') {
                if v.quoted {
                    Self::push_value(t, v, false, out);
                }
            } else if ks.contains(" -p") || ks.contains("\t-p") {
                // `-p 5432` is a port; `-p` with a flag after it asks for the password.
                if !value.starts_with('-') && !value.bytes().all(|b| b.is_ascii_digit() || b == b':') {
                    Self::push_value(t, v, false, out);
                }
            } else {
                let named =
                    lower.contains("password") || before(t, k.start(), 120).to_ascii_lowercase().contains("password");
                if named {
                    Self::push_value(t, v, true, out);
                }
            }
        }
        for m in self.url.find_iter(t) {
            // scheme://user:PASSWORD@ — the password is between the last ':' and the '@'.
            let s = m.as_str();
            let Some(scheme_end) = s.find("://") else { continue };
            let Some(colon) = s[scheme_end + 3..].find(':').map(|i| scheme_end + 3 + i) else { continue };
            let (start, end) = (m.start() + colon + 1, m.end() - 1);
            let pass = &t[start..end];
            if !pass.is_empty() && !is_placeholder(pass) && !URL_PLACEHOLDERS.contains(&pass) {
                out.push(finding(EntityKind::Password, start, end, 0.9, &["url-userinfo"]));
            }
        }
    }
}

struct GenericSecret {
    cue: Regex,
    assign: Regex,
    define: Regex,
    define_cue: Regex,
    auth: Regex,
}

impl GenericSecret {
    fn push_value(t: &str, v: Value, min_len: usize, min_entropy: f64, out: &mut Vec<Finding>) {
        let s = &t[v.start..v.end];
        if s.len() < min_len || s.bytes().any(|b| b.is_ascii_whitespace()) || is_placeholder(s) {
            return;
        }
        if s.contains("://") || s.starts_with(['/', ':']) || s.contains("::") || (!v.quoted && is_code(s)) {
            return;
        }
        // Random tokens of this length almost always contain a digit; CamelCase names do not.
        if !s.bytes().any(|b| b.is_ascii_digit()) {
            return;
        }
        // Random tokens mix character classes; snake_case words and CONSTANT_NAMES do not.
        let classes = [
            s.bytes().any(|b| b.is_ascii_lowercase()),
            s.bytes().any(|b| b.is_ascii_uppercase()),
            s.bytes().any(|b| b.is_ascii_digit()),
        ];
        if classes.iter().filter(|&&c| c).count() < 2 {
            return;
        }
        // Hex has at most 4 bits a character, so it gets a lower bar (as in detect-secrets).
        let bits = entropy(s);
        let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        if bits < if hex { min_entropy - 0.5 } else { min_entropy } {
            return;
        }
        if !is_placeholder_key(s) {
            let score = if bits >= 4.5 || (hex && bits >= 3.3) { 0.8 } else { 0.75 };
            out.push(finding(EntityKind::GenericSecret, v.start, v.end, score, &["key-name", "entropy"]));
        }
    }
}

impl Recognizer for GenericSecret {
    fn name(&self) -> &'static str {
        "generic-secret"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::GenericSecret]
    }
    fn triggers(&self) -> &[&'static str] {
        &[
            r#"(?i)(?:token|secret|key|auth|credentials?)["']?[ \t]*(?::|=)"#,
            r"(?i)\b(?:bearer[ \t]|authorization)",
            r"\bdefine\([ \t]*['\x22][A-Z0-9_]*(?:_KEY|_SALT|_SECRET|_TOKEN)['\x22]",
        ]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for k in find_in_cued_lines(&self.assign, &self.cue, t) {
            if let Some(v) = read_value(t, k.end()) {
                Self::push_value(t, v, 16, 3.5, out);
            }
        }
        // PHP constants (WordPress keys and salts): a quoted value of any characters.
        for k in find_in_cued_lines(&self.define, &self.define_cue, t) {
            if let Some(v) = read_value(t, k.end()).filter(|v| v.quoted) {
                Self::push_value(t, v, 16, 3.5, out);
            }
        }
        for k in self.auth.find_iter(t) {
            if let Some(v) = read_value(t, k.end()) {
                Self::push_value(t, v, 12, 3.0, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let t = r#"password = "a\"b" next"#;
        let v = read_value(t, 11).unwrap();
        assert_eq!(&t[v.start..v.end], r#"a\"b"#);
        let t = "PASSWORD=hunter2.";
        let v = read_value(t, 9).unwrap();
        assert_eq!(&t[v.start..v.end], "hunter2");
        assert!(read_value("x=\"unterminated", 2).is_none());
        assert!(is_code("get_password()") && is_code("self.password") && is_code("db_password"));
        assert!(!is_code("hunter2") && !is_code("S3cr3t!") && !is_code("Password123") && !is_code("password1"));
    }
}
