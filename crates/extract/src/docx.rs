//! Text from Word `.docx` files: a zip archive whose `word/document.xml` holds the body.
//!
//! Only three members are read (the body, the style names and the core properties), each
//! capped in size so that a small archive cannot expand into gigabytes. Paragraphs styled as
//! headings or titles become markdown headings so the chunker sees the document's structure.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;
use zip::result::ZipError;
use zip::ZipArchive;

use crate::{ExtractError, Extracted, FrontMatter};

/// Largest uncompressed member we will inflate.
pub(crate) const MAX_MEMBER_BYTES: usize = 64 * 1024 * 1024;

/// Extracts the body text, with the core-properties title (or the first title-level heading).
pub(crate) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|_| not_a_zip(bytes))?;
    let document = read_member(&mut archive, "word/document.xml")?.ok_or_else(|| malformed("no word/document.xml"))?;
    // Style names are optional; a broken styles part only costs us heading detection.
    let styles = read_member(&mut archive, "word/styles.xml")?.map(|xml| heading_styles(&xml)).unwrap_or_default();
    let core_title = read_member(&mut archive, "docProps/core.xml")?.and_then(|xml| core_title(&xml));
    let body = body_text(&document, &styles)?;
    Ok(Extracted {
        text: body.text,
        title: core_title.or(body.first_title),
        meta: FrontMatter::default(),
        pages: Vec::new(),
    })
}

fn malformed(reason: &str) -> ExtractError {
    ExtractError::Malformed { format: "docx", reason: reason.to_owned() }
}

/// Password-protected Office files are not zips but OLE compound files holding an
/// `EncryptedPackage` stream; tell that apart from plain garbage (or a legacy `.doc`).
fn not_a_zip(bytes: &[u8]) -> ExtractError {
    const OLE_MAGIC: &[u8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";
    let encrypted_package: Vec<u8> = "EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes).collect();
    if bytes.starts_with(OLE_MAGIC) && bytes.windows(encrypted_package.len()).any(|w| w == encrypted_package.as_slice())
    {
        return ExtractError::Encrypted;
    }
    malformed("not a zip archive")
}

/// Reads one member in full, refusing members (declared or actual) over [`MAX_MEMBER_BYTES`].
fn read_member(archive: &mut ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Option<Vec<u8>>, ExtractError> {
    let file = match archive.by_name(name) {
        Ok(file) => file,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED) | ZipError::InvalidPassword) => {
            return Err(ExtractError::Encrypted)
        }
        Err(_) => return Err(malformed("the zip archive could not be read")),
    };
    if file.encrypted() {
        return Err(ExtractError::Encrypted);
    }
    let too_large = ExtractError::TooLarge { limit: MAX_MEMBER_BYTES };
    let declared = usize::try_from(file.size()).map_err(|_| too_large.clone())?;
    if declared > MAX_MEMBER_BYTES {
        return Err(too_large);
    }
    // The declared size can lie, so the read itself is capped too.
    let mut data = Vec::with_capacity(declared.min(8 * 1024 * 1024));
    let cap = u64::try_from(MAX_MEMBER_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut data).map_err(|_| malformed("a zip member could not be decompressed"))?;
    if data.len() > MAX_MEMBER_BYTES {
        return Err(too_large);
    }
    Ok(Some(data))
}

struct Body {
    text: String,
    first_title: Option<String>,
}

/// One paragraph being collected; paragraphs nest when a text box sits inside a paragraph.
#[derive(Default)]
struct Paragraph {
    text: String,
    heading: Option<usize>,
    list: bool,
}

/// Streams `word/document.xml`, keeping the text a reader sees.
fn body_text(xml: &[u8], styles: &HashMap<String, usize>) -> Result<Body, ExtractError> {
    let mut reader = Reader::from_reader(xml);
    let mut out = String::new();
    let mut first_title = None;
    let mut paragraphs: Vec<Paragraph> = Vec::new();
    let mut in_text = false;
    let mut in_properties = false;
    let mut run_depth = 0usize;
    let mut run_hidden = false;
    // Content that duplicates or retracts other content: compatibility fallbacks (text boxes
    // appear twice) and the source of tracked moves.
    let mut skip_depth = 0usize;
    loop {
        let event = reader.read_event().map_err(|_| malformed("word/document.xml is not well-formed XML"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name();
                let name = name.as_ref();
                if matches!(name, b"Fallback" | b"moveFrom") {
                    skip_depth += usize::from(!empty);
                    continue;
                }
                if skip_depth > 0 {
                    continue;
                }
                match name {
                    b"p" if !empty => paragraphs.push(Paragraph::default()),
                    b"pPr" if !empty => in_properties = true,
                    b"pStyle" if in_properties => {
                        if let (Some(paragraph), Some(style)) = (paragraphs.last_mut(), val(e)) {
                            paragraph.heading = heading_level(&style, styles);
                        }
                    }
                    b"numPr" if in_properties => {
                        if let Some(paragraph) = paragraphs.last_mut() {
                            paragraph.list = true;
                        }
                    }
                    b"r" if !empty => {
                        run_depth += 1;
                        run_hidden = false;
                    }
                    // Hidden text (`w:vanish`) is not shown to readers.
                    b"vanish" if run_depth > 0 && !in_properties => {
                        run_hidden = !matches!(val(e).as_deref(), Some("false" | "0" | "off"));
                    }
                    b"t" if !empty => in_text = true,
                    b"tab" if run_depth > 0 => push(&mut paragraphs, run_hidden, "\t"),
                    b"br" | b"cr" if run_depth > 0 => push(&mut paragraphs, run_hidden, "\n"),
                    b"noBreakHyphen" if run_depth > 0 => push(&mut paragraphs, run_hidden, "-"),
                    _ => {}
                }
            }
            Event::End(ref e) => {
                let name = e.local_name();
                match name.as_ref() {
                    b"Fallback" | b"moveFrom" => skip_depth = skip_depth.saturating_sub(1),
                    _ if skip_depth > 0 => {}
                    b"p" => {
                        if let Some(paragraph) = paragraphs.pop() {
                            emit(&mut out, &mut first_title, paragraph);
                        }
                    }
                    b"pPr" => in_properties = false,
                    b"r" => run_depth = run_depth.saturating_sub(1),
                    b"t" => in_text = false,
                    _ => {}
                }
            }
            Event::Text(ref t) if in_text && skip_depth == 0 => {
                let text = t.decode().map_err(|_| malformed("text is not valid UTF-8"))?;
                push(&mut paragraphs, run_hidden, &text);
            }
            Event::CData(ref t) if in_text && skip_depth == 0 => {
                let text = t.decode().map_err(|_| malformed("text is not valid UTF-8"))?;
                push(&mut paragraphs, run_hidden, &text);
            }
            Event::GeneralRef(ref r) if in_text && skip_depth == 0 => {
                if let Some(c) = resolve_reference(r) {
                    push(&mut paragraphs, run_hidden, c.encode_utf8(&mut [0; 4]));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // A truncated document may leave paragraphs open; their text still counts.
    while let Some(paragraph) = paragraphs.pop() {
        emit(&mut out, &mut first_title, paragraph);
    }
    Ok(Body { text: out, first_title })
}

fn push(paragraphs: &mut [Paragraph], hidden: bool, text: &str) {
    if let Some(paragraph) = paragraphs.last_mut().filter(|_| !hidden) {
        paragraph.text.push_str(text);
    }
}

/// Appends a finished paragraph as markdown, separated from the previous one by a blank line.
fn emit(out: &mut String, first_title: &mut Option<String>, paragraph: Paragraph) {
    let text = paragraph.text.trim();
    if text.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    if let Some(level) = paragraph.heading {
        // A heading must stay on one line to remain a markdown heading.
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if level == 1 && first_title.is_none() {
            *first_title = Some(text.clone());
        }
        out.push_str(&"#".repeat(level));
        out.push(' ');
        out.push_str(&text);
    } else if paragraph.list {
        out.push_str("- ");
        out.push_str(text);
    } else {
        out.push_str(text);
    }
}

/// The `w:val` attribute, whatever its namespace prefix.
fn val(e: &BytesStart<'_>) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"val")
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn resolve_reference(r: &BytesRef<'_>) -> Option<char> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Some(c);
    }
    let name = r.decode().ok()?;
    quick_xml::escape::resolve_xml_entity(&name).and_then(|s| s.chars().next())
}

/// The heading level of a paragraph style: built-in ids (`Heading1`, `Title`) or, through
/// `styles.xml`, styles named `heading N` or `Title` (ids are localised, names are not).
fn heading_level(style_id: &str, styles: &HashMap<String, usize>) -> Option<usize> {
    styles.get(style_id).copied().or_else(|| builtin_level(style_id))
}

fn builtin_level(name: &str) -> Option<usize> {
    let name = name.to_ascii_lowercase().replace(' ', "");
    if name == "title" {
        return Some(1);
    }
    let level: usize = name.strip_prefix("heading")?.parse().ok()?;
    (1..=6).contains(&level).then_some(level)
}

/// Maps paragraph style ids to heading levels by their names.
fn heading_styles(xml: &[u8]) -> HashMap<String, usize> {
    let mut reader = Reader::from_reader(xml);
    let mut styles = HashMap::new();
    let mut current_id: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(ref e)) if e.local_name().as_ref() == b"style" => {
                current_id = e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.local_name().as_ref() == b"styleId")
                    .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()));
            }
            Ok(Event::Empty(ref e)) if e.local_name().as_ref() == b"name" => {
                if let (Some(id), Some(level)) = (current_id.as_ref(), val(e).as_deref().and_then(builtin_level)) {
                    styles.insert(id.clone(), level);
                }
            }
            Ok(Event::End(ref e)) if e.local_name().as_ref() == b"style" => current_id = None,
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    styles
}

/// `dc:title` from `docProps/core.xml`.
fn core_title(xml: &[u8]) -> Option<String> {
    let mut reader = Reader::from_reader(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(ref e) if e.local_name().as_ref() == b"title" => in_title = true,
            Event::End(ref e) if e.local_name().as_ref() == b"title" => break,
            Event::Text(ref t) if in_title => title.push_str(&t.decode().ok()?),
            Event::GeneralRef(ref r) if in_title => title.extend(resolve_reference(r)),
            Event::Eof => return None,
            _ => {}
        }
    }
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;

    use zip::write::SimpleFileOptions;
    use zip::ZipWriter;

    use super::*;

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    fn zip(members: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, content) in members {
            writer.start_file(*name, SimpleFileOptions::default()).unwrap();
            writer.write_all(content.as_bytes()).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn document(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {W}><w:body>{body}</w:body></w:document>"#
        )
    }

    fn para(style: Option<&str>, runs: &str) -> String {
        let props = style.map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#)).unwrap_or_default();
        format!("<w:p>{props}{runs}</w:p>")
    }

    fn run(text: &str) -> String {
        format!(r#"<w:r><w:t xml:space="preserve">{text}</w:t></w:r>"#)
    }

    #[test]
    fn headings_paragraphs_tabs_and_breaks() {
        let body = [
            para(Some("Title"), &run("Staff handbook")),
            para(Some("Heading1"), &run("Annual leave")),
            para(None, &format!("{}{}", run("Staff get 25 days"), run(" &amp; bank holidays."))),
            para(
                None,
                r#"<w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t>Name</w:t><w:tab/><w:t>Days</w:t><w:br/><w:t>Ada</w:t></w:r>"#,
            ),
            para(Some("Heading2"), &run("Carry-over")),
            para(None, ""),
            para(None, &run("Up to 5 days.")),
        ]
        .concat();
        let bytes = zip(&[("word/document.xml", &document(&body))]);
        let extracted = extract(&bytes).unwrap();
        assert_eq!(
            extracted.text,
            "# Staff handbook\n\n# Annual leave\n\nStaff get 25 days & bank holidays.\n\n\
             Name\tDays\nAda\n\n## Carry-over\n\nUp to 5 days."
        );
        assert_eq!(extracted.title.as_deref(), Some("Staff handbook"));
        assert!(extracted.pages.is_empty());
    }

    #[test]
    fn localised_styles_lists_hidden_text_and_fallbacks() {
        let styles = format!(
            r#"<w:styles {W}><w:style w:type="paragraph" w:styleId="berschrift2"><w:name w:val="heading 2"/></w:style><w:style w:styleId="Normal"><w:name w:val="Normal"/></w:style></w:styles>"#
        );
        let body = [
            para(Some("berschrift2"), &run("Urlaub")),
            r#"<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/></w:numPr></w:pPr><w:r><w:t>item</w:t></w:r></w:p>"#.to_owned(),
            r#"<w:p><w:r><w:t>seen</w:t></w:r><w:r><w:rPr><w:vanish/></w:rPr><w:t>HIDDEN</w:t></w:r><w:r><w:t> too</w:t></w:r></w:p>"#.to_owned(),
            r#"<w:p><w:r><w:t>box:</w:t></w:r><mc:AlternateContent xmlns:mc="m"><mc:Choice><w:p><w:r><w:t>inner</w:t></w:r></w:p></mc:Choice><mc:Fallback><w:p><w:r><w:t>DUPLICATE</w:t></w:r></w:p></mc:Fallback></mc:AlternateContent></w:p>"#.to_owned(),
            r#"<w:p><w:del><w:r><w:delText>DELETED</w:delText></w:r></w:del><w:r><w:instrText>PAGE</w:instrText></w:r><w:r><w:t>kept</w:t></w:r></w:p>"#.to_owned(),
        ]
        .concat();
        let core = r#"<cp:coreProperties xmlns:cp="c" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title> Core &amp; title </dc:title></cp:coreProperties>"#;
        let bytes =
            zip(&[("word/document.xml", &document(&body)), ("word/styles.xml", &styles), ("docProps/core.xml", core)]);
        let extracted = extract(&bytes).unwrap();
        assert_eq!(extracted.text, "## Urlaub\n\n- item\n\nseen too\n\ninner\n\nbox:\n\nkept");
        assert_eq!(extracted.title.as_deref(), Some("Core & title"));
    }

    #[test]
    fn broken_archives_are_malformed() {
        let no_document = zip(&[("word/other.xml", "<x/>")]);
        let cases: [(&[u8], &str); 4] = [
            (&no_document, "no word/document.xml"),
            (b"not a zip at all", "not a zip archive"),
            (b"", "not a zip archive"),
            (b"PK\x03\x04garbage", "not a zip archive"),
        ];
        for (bytes, reason) in cases {
            let expected = Err(ExtractError::Malformed { format: "docx", reason: reason.into() });
            assert_eq!(extract(bytes), expected);
        }
        let bad_xml = zip(&[("word/document.xml", "<w:document><w:body><w:p></w:body>")]);
        assert!(matches!(extract(&bad_xml), Err(ExtractError::Malformed { format: "docx", .. })));
        let mut truncated = zip(&[("word/document.xml", &document(&para(None, &run("x"))))]);
        truncated.truncate(truncated.len() / 2);
        assert!(extract(&truncated).is_err());
    }

    #[test]
    fn encrypted_office_files_are_recognised() {
        let mut ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".to_vec();
        ole.extend_from_slice(&[0; 64]);
        ole.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(extract(&ole), Err(ExtractError::Encrypted));
    }

    #[test]
    fn oversized_members_are_refused() {
        // 65 MiB of zeros deflates to a few dozen KiB: a small zip bomb.
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default().large_file(false);
        writer.start_file("word/document.xml", options).unwrap();
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..65 {
            writer.write_all(&zeros).unwrap();
        }
        let bytes = writer.finish().unwrap().into_inner();
        assert!(bytes.len() < MAX_MEMBER_BYTES / 100);
        assert_eq!(extract(&bytes), Err(ExtractError::TooLarge { limit: MAX_MEMBER_BYTES }));
    }
}
