//! The API key format and its digest (pure).
//!
//! A key reads `prm_<id>_<secret>`: `id` is 16 hex digits (64 random bits) and public — it names
//! the key in listings, logs and audit records; `secret` is 64 hex digits (256 random bits) and
//! is shown once, when the key is created. Only SHA-256 of the secret is stored: for a uniformly
//! random 256-bit secret a fast hash is enough (there is nothing to brute-force, unlike a
//! password), and a slow KDF would cost every request. Digests are compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix every key starts with (lets secret scanners recognise leaked keys).
pub const KEY_PREFIX: &str = "prm_";
/// Random bytes in a key id.
pub const ID_BYTES: usize = 8;
/// Random bytes in a key secret.
pub const SECRET_BYTES: usize = 32;
/// Random bytes needed to make one key.
pub const RANDOM_BYTES: usize = ID_BYTES + SECRET_BYTES;

/// A key's public id: 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id as printed by `perimeter keys list`.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == ID_BYTES * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| KeyId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of a key's secret: what the store keeps.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigest(pub [u8; 32]);

impl SecretDigest {
    /// Constant-time equality, so the time a wrong secret takes to refuse says nothing about how
    /// much of it was right.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// A whole key, as the client presents it. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    id: KeyId,
    secret: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ApiKey {
    /// Makes a key from `RANDOM_BYTES` bytes drawn from a CSPRNG (randomness is an input, so this
    /// stays pure and testable).
    pub fn from_random(random: &[u8; RANDOM_BYTES]) -> Self {
        let (id, secret) = random.split_at(ID_BYTES);
        ApiKey { id: KeyId(hex::encode(id)), secret: hex::encode(secret) }
    }

    /// Parses a presented key. `None` for anything not shaped like one of ours; the reason is
    /// not distinguished further (a caller learns nothing from the refusal).
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(KEY_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let id = KeyId::parse(id)?;
        let hex_ok = secret.len() == SECRET_BYTES * 2 && secret.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        hex_ok.then(|| ApiKey { id, secret: secret.to_string() })
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn digest(&self) -> SecretDigest {
        SecretDigest(Sha256::digest(self.secret.as_bytes()).into())
    }

    /// The full key text, to show the operator once. Never log it.
    pub fn expose(&self) -> String {
        format!("{KEY_PREFIX}{}_{}", self.id, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u8) -> [u8; RANDOM_BYTES] {
        let mut r = [0u8; RANDOM_BYTES];
        for (i, b) in r.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8);
        }
        r
    }

    #[test]
    fn a_key_round_trips_through_its_text() {
        let key = ApiKey::from_random(&random(7));
        let text = key.expose();
        assert!(text.starts_with("prm_"));
        assert_eq!(text.len(), 4 + 16 + 1 + 64);
        let parsed = ApiKey::parse(&text).unwrap();
        assert_eq!(parsed, key);
        assert!(parsed.digest().matches(&key.digest()));
    }

    #[test]
    fn different_secrets_have_different_digests() {
        let a = ApiKey::from_random(&random(1));
        let mut r = random(1);
        r[RANDOM_BYTES - 1] ^= 1;
        let b = ApiKey::from_random(&r);
        assert_eq!(a.id(), b.id(), "same id bytes");
        assert!(!a.digest().matches(&b.digest()));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = ApiKey::from_random(&random(3)).expose();
        let cases = [
            String::new(),
            "sk-abc".into(),
            good.replace("prm_", "prx_"),
            good[..good.len() - 1].to_string(),
            format!("{good}0"),
            good.to_uppercase(),
            good.replacen('_', "-", 2),
            format!(" {good}"),
        ];
        for c in &cases {
            assert!(ApiKey::parse(c).is_none(), "{c:?} parsed");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::from_random(&random(9));
        let text = key.expose();
        let secret = text.rsplit('_').next().unwrap();
        assert!(!format!("{key:?}").contains(secret));
        assert_eq!(format!("{:?}", key.digest()), "SecretDigest(..)");
    }
}
