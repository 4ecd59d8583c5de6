//! Every document parser on arbitrary bytes: the first byte picks the format. Extraction may
//! fail, but must never panic, hang or return page ranges outside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_extract::{extract, Format};

const FORMATS: [Format; 7] = [Format::Text, Format::Markdown, Format::Html, Format::Pdf, Format::Docx, Format::Csv, Format::Json];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let format = FORMATS[selector as usize % FORMATS.len()];
    if let Ok(out) = extract(format, bytes) {
        assert!(!out.text.trim().is_empty());
        for page in &out.pages {
            assert!(page.start <= page.end && page.end <= out.text.len());
            assert!(out.text.is_char_boundary(page.start) && out.text.is_char_boundary(page.end));
        }
    }
});
