//! The vocabulary of instruction-like content found in documents: what kind of injection a
//! passage carries. Detection lives in `perimeter-guard`; the kinds are named here because the
//! store and retrieval carry them with every chunk.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of instruction-like content in a passage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionKind {
    /// "Ignore previous instructions", "you are now …", "new instructions:".
    Override,
    /// Chat-template and role markers: `system:` at a line start, `<|im_start|>`, `[INST]`.
    RoleMarker,
    /// Tool or function-call syntax: `<tool_call>`, `"tool_calls"`, `{"name": …, "arguments":`.
    ToolCall,
    /// Text a reader does not see: zero-width runs, bidi overrides, Unicode tag characters.
    HiddenText,
}

impl InjectionKind {
    pub const ALL: [InjectionKind; 4] =
        [InjectionKind::Override, InjectionKind::RoleMarker, InjectionKind::ToolCall, InjectionKind::HiddenText];

    /// The canonical name, e.g. `role_marker`.
    pub fn as_str(self) -> &'static str {
        match self {
            InjectionKind::Override => "override",
            InjectionKind::RoleMarker => "role_marker",
            InjectionKind::ToolCall => "tool_call",
            InjectionKind::HiddenText => "hidden_text",
        }
    }
}

impl fmt::Display for InjectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for k in InjectionKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }
}
