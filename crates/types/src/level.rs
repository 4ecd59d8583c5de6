//! Sensitivity levels, ordered `public < internal < confidential < restricted`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How sensitive a piece of text is. The order is meaningful: a request's level is the maximum
/// of everything it touches, and a level may be raised but never lowered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 4] = [Level::Public, Level::Internal, Level::Confidential, Level::Restricted];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Public => "public",
            Level::Internal => "internal",
            Level::Confidential => "confidential",
            Level::Restricted => "restricted",
        }
    }
}

impl Default for Level {
    /// Documents without a label are `internal`: not public, not known to be sensitive.
    fn default() -> Self {
        Level::Internal
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sensitivity level {0:?}: expected one of public, internal, confidential, restricted")]
pub struct ParseLevelError(pub String);

impl FromStr for Level {
    type Err = ParseLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(Level::Public),
            "internal" => Ok(Level::Internal),
            "confidential" => Ok(Level::Confidential),
            "restricted" => Ok(Level::Restricted),
            _ => Err(ParseLevelError(s.chars().take(40).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_round_trip() {
        assert!(Level::Public < Level::Internal);
        assert!(Level::Internal < Level::Confidential);
        assert!(Level::Confidential < Level::Restricted);
        for level in Level::ALL {
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
            let json = serde_json::to_string(&level).unwrap_or_default();
            assert_eq!(json, format!("\"{level}\""));
        }
        assert_eq!(" Restricted ".parse::<Level>(), Ok(Level::Restricted));
        assert!("secret".parse::<Level>().is_err());
        assert_eq!(Level::default(), Level::Internal);
    }
}
