//! Turns untrusted document bytes into plain text, and plain text into chunks.
//!
//! Everything here is pure: bytes in, values out. No filesystem, no network, no clocks. Parsers
//! of untrusted input must never panic; the one third-party parser that can (`pdf-extract`) is
//! fenced with `catch_unwind`. Errors name the problem and never quote document text.

mod chunk;
mod docx;
mod front_matter;
mod html;
mod pdf;

use std::ops::Range;

use perimeter_types::Level;

pub use chunk::{chunk, Chunk, ChunkSpec};

/// Inputs larger than this are refused before any parsing starts.
pub const MAX_INPUT_BYTES: usize = 256 * 1024 * 1024;

/// The document formats Perimeter can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Csv,
    Json,
}

impl Format {
    /// The format for a file extension (without the dot), ignoring case.
    pub fn from_extension(ext: &str) -> Option<Format> {
        let format = match ext.to_ascii_lowercase().as_str() {
            "txt" | "text" => Format::Text,
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "csv" => Format::Csv,
            "json" => Format::Json,
            _ => return None,
        };
        Some(format)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// Metadata a document declares about itself: YAML-style front matter in text and markdown,
/// `<meta name="perimeter:…">` tags in HTML.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FrontMatter {
    pub title: Option<String>,
    pub collection: Option<String>,
    pub label: Option<Level>,
    /// Lower-cased group names. `Some(vec![])` when the key is present but lists no group;
    /// what that means for access is the caller's decision.
    pub groups: Option<Vec<String>>,
}

/// The text of a document and what was learnt about it on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The document's plain text (markdown-flavoured where structure was known): what gets
    /// chunked and indexed.
    pub text: String,
    /// Best-effort title: front matter, HTML `<title>`, first markdown H1, PDF Title, docx title.
    pub title: Option<String>,
    pub meta: FrontMatter,
    /// PDF only: the byte range of each page within `text` (page n is index n-1).
    pub pages: Vec<Range<usize>>,
}

/// Why a document could not be read. Messages name the problem, never the document's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the document is not valid UTF-8")]
    NotUtf8,
    #[error("malformed {format}: {reason}")]
    Malformed { format: &'static str, reason: String },
    #[error("the document is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the document is encrypted")]
    Encrypted,
    #[error("the document contains no text")]
    Empty,
}

/// Extracts the text of a document of the given format.
pub fn extract(format: Format, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ExtractError::TooLarge { limit: MAX_INPUT_BYTES });
    }
    let extracted = match format {
        Format::Text | Format::Markdown => text_document(format, bytes)?,
        Format::Html => html::extract(bytes)?,
        Format::Pdf => pdf::extract(bytes)?,
        Format::Docx => docx::extract(bytes)?,
        Format::Csv | Format::Json => {
            Extracted { text: utf8(bytes)?.to_owned(), title: None, meta: FrontMatter::default(), pages: Vec::new() }
        }
    };
    if extracted.text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(extracted)
}

fn text_document(format: Format, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let (meta, body) = front_matter::split(utf8(bytes)?)?;
    let title = match &meta.title {
        Some(title) => Some(title.clone()),
        None if format == Format::Markdown => chunk::first_h1(body),
        None => None,
    };
    Ok(Extracted { text: body.to_owned(), title, meta, pages: Vec::new() })
}

/// Strict UTF-8 with the byte-order mark, which is not content, removed.
fn utf8(bytes: &[u8]) -> Result<&str, ExtractError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ExtractError::NotUtf8)?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_round_trip_and_ignore_case() {
        let cases = [
            ("txt", Some(Format::Text)),
            ("TEXT", Some(Format::Text)),
            ("md", Some(Format::Markdown)),
            ("Markdown", Some(Format::Markdown)),
            ("html", Some(Format::Html)),
            ("HTM", Some(Format::Html)),
            ("pdf", Some(Format::Pdf)),
            ("docx", Some(Format::Docx)),
            ("csv", Some(Format::Csv)),
            ("json", Some(Format::Json)),
            ("doc", None),
            ("", None),
            (".md", None),
        ];
        for (ext, expected) in cases {
            assert_eq!(Format::from_extension(ext), expected, "{ext}");
        }
        for format in
            [Format::Text, Format::Markdown, Format::Html, Format::Pdf, Format::Docx, Format::Csv, Format::Json]
        {
            assert_eq!(Format::from_extension(format.as_str()), Some(format));
        }
    }

    #[test]
    fn text_requires_utf8_and_strips_the_bom() {
        assert_eq!(extract(Format::Text, b"caf\xe9"), Err(ExtractError::NotUtf8));
        assert_eq!(extract(Format::Csv, b"a,b\n\xff,1"), Err(ExtractError::NotUtf8));
        assert_eq!(extract(Format::Json, b"\xc3"), Err(ExtractError::NotUtf8));
        let done = extract(Format::Text, "\u{feff}hello".as_bytes());
        assert_eq!(done.map(|e| e.text), Ok("hello".to_owned()));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        // Zeroed allocations are lazy, so this costs no real memory.
        let huge = vec![0u8; MAX_INPUT_BYTES + 1];
        for format in [Format::Text, Format::Pdf, Format::Docx] {
            let limit = MAX_INPUT_BYTES;
            assert_eq!(extract(format, &huge), Err(ExtractError::TooLarge { limit }));
        }
    }

    #[test]
    fn whitespace_only_documents_are_empty() {
        for format in [Format::Text, Format::Markdown, Format::Html, Format::Csv, Format::Json] {
            assert_eq!(extract(format, b""), Err(ExtractError::Empty), "{format:?}");
            assert_eq!(extract(format, b" \n\t\r\n "), Err(ExtractError::Empty), "{format:?}");
        }
        let only_front_matter = b"---\ntitle: Nothing here\n---\n\n";
        assert_eq!(extract(Format::Markdown, only_front_matter), Err(ExtractError::Empty));
        let only_script = b"<html><script>var a = 1;</script><!-- note --></html>";
        assert_eq!(extract(Format::Html, only_script), Err(ExtractError::Empty));
    }

    #[test]
    fn csv_and_json_are_kept_verbatim_without_front_matter() {
        let csv = "---\ntitle: x\n---\nname,age\nAda,36\n";
        let done = extract(Format::Csv, csv.as_bytes());
        assert_eq!(done.as_ref().map(|e| e.text.as_str()), Ok(csv));
        assert_eq!(done.map(|e| e.meta), Ok(FrontMatter::default()));
    }

    #[test]
    fn markdown_title_falls_back_to_the_first_h1() {
        let md = "Intro line\n\n```\n# not a heading\n```\n\n## Second\n\n# The Title #\n\nBody";
        let done = extract(Format::Markdown, md.as_bytes());
        assert_eq!(done.map(|e| e.title), Ok(Some("The Title".to_owned())));
        // Plain text is not markdown: `#` lines do not make a title.
        let done = extract(Format::Text, b"# Looks like a heading\n\nbody");
        assert_eq!(done.map(|e| e.title), Ok(None));
    }

    #[test]
    fn errors_never_quote_the_document() {
        let secret = "---\nlabel: TOP-SECRET-CODEWORD\n---\nbody";
        let err = extract(Format::Markdown, secret.as_bytes()).err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("label"), "{message}");
        assert!(!message.contains("CODEWORD"), "{message}");
    }
}
