//! Kinds of sensitive data and the sensitivity level each implies by default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Level;

/// A kind of sensitive data. The canonical names (`EMAIL`, `CREDIT_CARD`, …) are a stable
/// interface: CLI output, the `perimeter` object, the audit log and policies use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityKind {
    Email,
    Phone,
    CreditCard,
    Iban,
    SwiftBic,
    UsSsn,
    UsItin,
    UkNino,
    UkNhs,
    Passport,
    IpAddress,
    MacAddress,
    DateOfBirth,
    Person,
    StreetAddress,
    MedicalRecordNumber,
    MedicalCondition,
    CryptoWallet,
    AwsAccessKey,
    AwsSecretKey,
    GithubToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    OpenaiApiKey,
    Jwt,
    PrivateKey,
    Password,
    GenericSecret,
}

impl EntityKind {
    pub const ALL: [EntityKind; 29] = [
        EntityKind::Email,
        EntityKind::Phone,
        EntityKind::CreditCard,
        EntityKind::Iban,
        EntityKind::SwiftBic,
        EntityKind::UsSsn,
        EntityKind::UsItin,
        EntityKind::UkNino,
        EntityKind::UkNhs,
        EntityKind::Passport,
        EntityKind::IpAddress,
        EntityKind::MacAddress,
        EntityKind::DateOfBirth,
        EntityKind::Person,
        EntityKind::StreetAddress,
        EntityKind::MedicalRecordNumber,
        EntityKind::MedicalCondition,
        EntityKind::CryptoWallet,
        EntityKind::AwsAccessKey,
        EntityKind::AwsSecretKey,
        EntityKind::GithubToken,
        EntityKind::SlackToken,
        EntityKind::StripeKey,
        EntityKind::GoogleApiKey,
        EntityKind::OpenaiApiKey,
        EntityKind::Jwt,
        EntityKind::PrivateKey,
        EntityKind::Password,
        EntityKind::GenericSecret,
    ];

    /// The canonical name, e.g. `CREDIT_CARD`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Email => "EMAIL",
            EntityKind::Phone => "PHONE",
            EntityKind::CreditCard => "CREDIT_CARD",
            EntityKind::Iban => "IBAN",
            EntityKind::SwiftBic => "SWIFT_BIC",
            EntityKind::UsSsn => "US_SSN",
            EntityKind::UsItin => "US_ITIN",
            EntityKind::UkNino => "UK_NINO",
            EntityKind::UkNhs => "UK_NHS",
            EntityKind::Passport => "PASSPORT",
            EntityKind::IpAddress => "IP_ADDRESS",
            EntityKind::MacAddress => "MAC_ADDRESS",
            EntityKind::DateOfBirth => "DATE_OF_BIRTH",
            EntityKind::Person => "PERSON",
            EntityKind::StreetAddress => "STREET_ADDRESS",
            EntityKind::MedicalRecordNumber => "MEDICAL_RECORD_NUMBER",
            EntityKind::MedicalCondition => "MEDICAL_CONDITION",
            EntityKind::CryptoWallet => "CRYPTO_WALLET",
            EntityKind::AwsAccessKey => "AWS_ACCESS_KEY",
            EntityKind::AwsSecretKey => "AWS_SECRET_KEY",
            EntityKind::GithubToken => "GITHUB_TOKEN",
            EntityKind::SlackToken => "SLACK_TOKEN",
            EntityKind::StripeKey => "STRIPE_KEY",
            EntityKind::GoogleApiKey => "GOOGLE_API_KEY",
            EntityKind::OpenaiApiKey => "OPENAI_API_KEY",
            EntityKind::Jwt => "JWT",
            EntityKind::PrivateKey => "PRIVATE_KEY",
            EntityKind::Password => "PASSWORD",
            EntityKind::GenericSecret => "GENERIC_SECRET",
        }
    }

    /// Credentials that grant access to systems.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            EntityKind::AwsAccessKey
                | EntityKind::AwsSecretKey
                | EntityKind::GithubToken
                | EntityKind::SlackToken
                | EntityKind::StripeKey
                | EntityKind::GoogleApiKey
                | EntityKind::OpenaiApiKey
                | EntityKind::Jwt
                | EntityKind::PrivateKey
                | EntityKind::Password
                | EntityKind::GenericSecret
        )
    }

    /// Protected health information.
    pub fn is_phi(self) -> bool {
        matches!(self, EntityKind::UkNhs | EntityKind::MedicalRecordNumber | EntityKind::MedicalCondition)
    }

    /// The level a finding of this kind gives the text it is in, before policy overrides:
    /// secrets, PHI, payment and national identifiers are `restricted`; contact and identity
    /// details are `confidential`.
    pub fn default_level(self) -> Level {
        if self.is_secret() || self.is_phi() {
            return Level::Restricted;
        }
        match self {
            EntityKind::CreditCard
            | EntityKind::Iban
            | EntityKind::UsSsn
            | EntityKind::UsItin
            | EntityKind::UkNino
            | EntityKind::Passport
            | EntityKind::CryptoWallet => Level::Restricted,
            EntityKind::SwiftBic => Level::Internal,
            _ => Level::Confidential,
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity kind {0:?}")]
pub struct ParseEntityKindError(pub String);

impl FromStr for EntityKind {
    type Err = ParseEntityKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseEntityKindError(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_levels_follow_the_brief() {
        for k in EntityKind::ALL {
            assert_eq!(k.as_str().parse::<EntityKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        assert_eq!(EntityKind::CreditCard.default_level(), Level::Restricted);
        assert_eq!(EntityKind::AwsSecretKey.default_level(), Level::Restricted);
        assert_eq!(EntityKind::MedicalCondition.default_level(), Level::Restricted);
        assert_eq!(EntityKind::Email.default_level(), Level::Confidential);
        assert_eq!(EntityKind::Person.default_level(), Level::Confidential);
        assert!("NOPE".parse::<EntityKind>().is_err());
    }
}
