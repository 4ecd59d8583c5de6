//! API keys, roles and principals.
//!
//! The pure parts — the key format and digest (`key`), roles, the principal and the route →
//! role authorisation table (`access`) — take randomness and time as inputs. The SQLite key
//! store (`store`) is the only part that does IO.

mod access;
mod key;
mod store;

pub use access::{authorize, classify, normalise_groups, valid_group, Endpoint, Principal, Role};
pub use key::{ApiKey, KeyId, SecretDigest, KEY_PREFIX, RANDOM_BYTES};
pub use store::{Authentication, KeyRecord, KeyStore, KeyStoreError, NewKey, Refusal, KEYS_FILE};
