//! Redaction of a text too large to hold: [`StreamRedactor`] takes it window by window, keeps
//! one numbering across windows, and gives exactly what [`redact`](crate::redact) gives for the
//! whole text with the same spans.

use crate::literals::Literals;
use crate::mapping::Mapping;
use crate::redact::{choose, Namer};
use crate::{RedactError, Span, Tokens};

/// Redacts a text given in windows (see [`push`](StreamRedactor::push)) with one numbering, so the
/// same value gets the same placeholder in every window.
///
/// Redaction must know which placeholders already occur literally in the whole text before it
/// names the first value (`<EMAIL_1>` typed in the last window would otherwise clash with the
/// first email redacted). So it takes the [`Literals`] of the whole text, collected in a first
/// pass by a [`LiteralScanner`](crate::LiteralScanner).
///
/// For the same literals and spans, the concatenated [`Head`] texts equal
/// [`redact`](crate::redact)`(whole, spans, tokens).text` and [`finish`](StreamRedactor::finish)
/// equals its mapping, so [`restore`](crate::restore) gives the whole text back. Memory is the
/// mapping (each distinct value once, plus an index) and the literals, never the text.
pub struct StreamRedactor {
    namer: Namer,
}

/// The redacted head of a window, from [`StreamRedactor::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The head of the window with placeholders, to be written out.
    pub text: String,
    /// How many bytes of the window it covers: the next window starts there.
    pub consumed: usize,
}

impl StreamRedactor {
    /// `literals` must be those of the whole text that will be pushed.
    pub fn new(tokens: &Tokens, literals: Literals) -> Result<Self, RedactError> {
        tokens.validate()?;
        Ok(StreamRedactor { namer: Namer::new(tokens, literals)? })
    }

    /// Redacts the head of `window`, which continues the text where the last head ended, and
    /// says where it ends.
    ///
    /// `spans` are in `window`'s coordinates, chosen as [`redact`](crate::redact) chooses them;
    /// only the kept spans that start before `cut` are replaced. The head runs to `cut`, or to the
    /// end of a kept span that starts before `cut` and runs past it. Spans that start later are
    /// left for the next window, which must start at [`Head::consumed`] and carry their text
    /// again. The last window is pushed with `cut == window.len()`.
    ///
    /// A span out of bounds, reversed or not on character boundaries is
    /// [`RedactError::InvalidSpan`] (its index in `spans`), and a `cut` past the end or inside a
    /// character [`RedactError::InvalidCut`]; either way nothing is redacted.
    pub fn push(&mut self, window: &str, spans: &[Span], cut: usize) -> Result<Head, RedactError> {
        if !window.is_char_boundary(cut) {
            return Err(RedactError::InvalidCut { cut });
        }
        let chosen = choose(window, spans).map_err(|index| RedactError::InvalidSpan { index })?;
        // Kept spans are sorted and disjoint, so those that start before `cut` are a prefix.
        let before = chosen.iter().take_while(|s| s.start < cut).count();
        let mut text = String::with_capacity(cut + cut / 8);
        let end = self.namer.write(window, &chosen[..before], &mut text);
        let consumed = end.max(cut);
        text.push_str(&window[end..consumed]);
        Ok(Head { text, consumed })
    }

    /// The placeholders named so far.
    pub fn mapping(&self) -> &Mapping {
        &self.namer.mapping
    }

    /// The mapping for the whole text.
    pub fn finish(self) -> Mapping {
        self.namer.mapping
    }
}

impl std::fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRedactor").field("mapping", &self.namer.mapping).finish_non_exhaustive()
    }
}
