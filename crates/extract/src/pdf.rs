//! Text from PDF files, page by page, through `pdf-extract` (which parses with `lopdf`).
//!
//! `pdf-extract` can panic on malformed input, so all of its work runs inside
//! `catch_unwind` and a panic becomes an ordinary `Malformed` error. The page ranges let
//! citations name the page a passage came from.

use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};

use pdf_extract::{Document, Object, PlainTextOutput};

use crate::{ExtractError, Extracted, FrontMatter};

/// Extracts each page's text, joined with blank lines, and the document-information title.
pub(crate) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let parsed = panic::catch_unwind(AssertUnwindSafe(|| parse(bytes))).map_err(|_| unparseable())??;
    let mut text = String::new();
    let mut pages: Vec<Range<usize>> = Vec::with_capacity(parsed.pages.len());
    for (index, page) in parsed.pages.iter().enumerate() {
        if index > 0 {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(page.trim());
        pages.push(start..text.len());
    }
    if text.trim().is_empty() {
        // Scanned pages without a text layer: nothing to index, and OCR is not done here.
        return Err(ExtractError::Empty);
    }
    Ok(Extracted { text, title: parsed.title, meta: FrontMatter::default(), pages })
}

struct Parsed {
    pages: Vec<String>,
    title: Option<String>,
}

fn unparseable() -> ExtractError {
    ExtractError::Malformed { format: "pdf", reason: "the PDF could not be parsed".to_owned() }
}

fn parse(bytes: &[u8]) -> Result<Parsed, ExtractError> {
    let mut doc = Document::load_mem(bytes).map_err(|err| match err {
        pdf_extract::Error::Decryption(_) | pdf_extract::Error::InvalidPassword => ExtractError::Encrypted,
        _ => unparseable(),
    })?;
    // lopdf opens files with an empty user password by itself and then drops `/Encrypt`
    // from the trailer; if it is still there, the file needs a password we do not have.
    if doc.trailer.get(b"Encrypt").is_ok() && doc.decrypt("").is_err() {
        return Err(ExtractError::Encrypted);
    }
    let title = info_title(&doc);
    let mut pages = Vec::new();
    // Each page separately, so that page n of the text is page n of the document. A page
    // that fails fails the document: silently dropping it would shift every later page.
    for number in doc.get_pages().into_keys() {
        let mut page = String::new();
        let mut output = PlainTextOutput::new(&mut page);
        pdf_extract::output_doc_page(&doc, &mut output, number).map_err(|_| ExtractError::Malformed {
            format: "pdf",
            reason: format!("page {number} could not be read"),
        })?;
        pages.push(page);
    }
    Ok(Parsed { pages, title })
}

/// `/Title` from the document information dictionary.
fn info_title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let (_, info) = doc.dereference(info).ok()?;
    let title = info.as_dict().ok()?.get(b"Title").ok()?;
    let (_, title) = doc.dereference(title).ok()?;
    let title = match title {
        Object::String(..) => pdf_extract::decode_text_string(title).ok()?,
        _ => return None,
    };
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const TWO_PAGES: &[u8] = include_bytes!("../tests/data/two-pages.pdf");

    #[test]
    fn two_pages_with_ranges() {
        let extracted = extract(TWO_PAGES).unwrap();
        assert_eq!(extracted.pages.len(), 2);
        let page = |n: usize| &extracted.text[extracted.pages[n - 1].clone()];
        assert!(page(1).contains("Annual leave policy"), "{:?}", page(1));
        assert!(page(1).contains("Staff receive 25 days of paid leave."), "{:?}", page(1));
        assert!(!page(1).contains("Carry-over"), "{:?}", page(1));
        assert!(page(2).contains("Carry-over rules"), "{:?}", page(2));
        assert!(page(2).contains("Up to 5 days may be carried over."), "{:?}", page(2));
        assert_eq!(extracted.pages[0].start, 0);
        assert_eq!(extracted.pages[1].start, extracted.pages[0].end + 2);
        assert_eq!(extracted.pages[1].end, extracted.text.len());
        assert_eq!(extracted.title.as_deref(), Some("Leave Handbook"));
    }

    #[test]
    fn password_protected_pdfs_are_encrypted() {
        let bytes = include_bytes!("../tests/data/encrypted.pdf");
        assert_eq!(extract(bytes), Err(ExtractError::Encrypted));
    }

    #[test]
    fn truncated_or_garbage_pdfs_are_errors_not_panics() {
        for len in [0, 8, 100, TWO_PAGES.len() / 3, TWO_PAGES.len() / 2, TWO_PAGES.len() - 40] {
            assert!(extract(&TWO_PAGES[..len]).is_err(), "truncated to {len} bytes");
        }
        assert!(extract(b"%PDF-1.4\n garbage").is_err());
        assert!(extract(b"not a pdf").is_err());
        // Flip bytes through the body: whatever happens must come back as a value.
        for i in (0..TWO_PAGES.len()).step_by(97) {
            let mut damaged = TWO_PAGES.to_vec();
            damaged[i] ^= 0x5a;
            let _ = extract(&damaged);
        }
    }
}
