//! Visible text from HTML, by a small hand-written tokenizer.
//!
//! A full HTML5 parser is a large dependency for what indexing needs: the words a reader sees,
//! with headings, paragraphs and list items kept as markdown so the chunker sees structure.
//! The tokenizer works on any byte input without panicking: every index it slices at is the
//! position of an ASCII byte, so always a character boundary, and every scan is bounded by the
//! end of the input.

use crate::front_matter::{MetaSink, Value};
use crate::{ExtractError, Extracted};

/// Extracts the visible text, the `<title>` and the `perimeter:` meta tags.
pub(crate) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let source = String::from_utf8_lossy(bytes);
    let mut tokenizer = Tokenizer {
        src: &source,
        pos: 0,
        writer: Writer::default(),
        meta: MetaSink::new("html"),
        title: None,
        first_h1: None,
        suppressed: 0,
    };
    tokenizer.run()?;
    let Tokenizer { mut writer, meta, title, first_h1, .. } = tokenizer;
    writer.flush_line();
    Ok(Extracted { text: writer.out, title: title.or(first_h1), meta: meta.finish(), pages: Vec::new() })
}

/// Elements whose content is raw text, never shown.
const RAW_TEXT_HIDDEN: &[&str] = &["script", "style"];

/// Elements whose content is markup that is not shown: it is tokenized (so nesting and
/// comments are respected) but its text is dropped.
const SUPPRESSED: &[&str] = &["noscript", "template", "svg"];

/// Elements that start and end a paragraph.
const PARAGRAPH_BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "table",
    "ul",
    "ol",
    "dl",
    "pre",
    "blockquote",
    "main",
    "nav",
    "aside",
    "figure",
    "figcaption",
    "form",
    "fieldset",
    "address",
    "details",
    "summary",
    "caption",
    "hr",
    "body",
    "html",
];

/// Elements that start and end a line.
const LINE_BLOCKS: &[&str] = &["tr", "dt", "dd", "option"];

/// Elements whose boundaries separate words without breaking the line.
const CELLS: &[&str] = &["td", "th"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Break {
    #[default]
    None,
    Line,
    Paragraph,
}

/// Accumulates output text one block (line) at a time.
#[derive(Default)]
struct Writer {
    out: String,
    /// The current block's text, whitespace already collapsed (except inside `<pre>`).
    line: String,
    pending_space: bool,
    /// Markdown put before the next non-empty line: `## ` for headings, `- ` for list items.
    prefix: String,
    pending_break: Break,
    pre_depth: usize,
    heading: Option<usize>,
}

impl Writer {
    fn text(&mut self, decoded: &str) {
        if self.pre_depth > 0 {
            self.line.push_str(&decoded.replace("\r\n", "\n").replace('\u{a0}', " "));
            return;
        }
        for c in decoded.chars() {
            if c.is_whitespace() {
                self.pending_space = !self.line.is_empty();
            } else {
                if self.pending_space {
                    self.line.push(' ');
                    self.pending_space = false;
                }
                self.line.push(c);
            }
        }
    }

    fn space(&mut self) {
        self.pending_space = !self.line.is_empty();
    }

    fn block(&mut self, brk: Break) {
        self.flush_line();
        self.pending_break = self.pending_break.max(brk);
    }

    fn flush_line(&mut self) {
        let line = self.line.trim();
        if !line.is_empty() {
            if !self.out.is_empty() {
                self.out.push_str(match self.pending_break {
                    Break::Paragraph => "\n\n",
                    Break::Line | Break::None => "\n",
                });
            }
            self.out.push_str(&self.prefix);
            self.out.push_str(line);
            self.prefix.clear();
            self.pending_break = Break::None;
        }
        self.line.clear();
        self.pending_space = false;
    }
}

struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    writer: Writer,
    meta: MetaSink,
    title: Option<String>,
    first_h1: Option<String>,
    /// Depth inside [`SUPPRESSED`] elements.
    suppressed: usize,
}

struct Tag {
    name: String,
    closing: bool,
    /// `<… />`, which only means something for foreign elements such as `<svg/>`.
    self_closing: bool,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Tokenizer<'_> {
    fn run(&mut self) -> Result<(), ExtractError> {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() {
            let Some(lt) = find_byte(bytes, self.pos, b'<') else {
                self.text(self.pos, bytes.len());
                break;
            };
            self.text(self.pos, lt);
            self.pos = lt;
            let rest = &bytes[lt..];
            if rest.starts_with(b"<!--") {
                self.pos = find(bytes, lt + 4, b"-->").map_or(bytes.len(), |end| end + 3);
            } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
                // Doctype, CDATA, processing instructions: nothing visible.
                self.pos = find_byte(bytes, lt + 2, b'>').map_or(bytes.len(), |end| end + 1);
            } else if let Some(tag) = self.tag() {
                self.handle(tag)?;
            } else {
                // A `<` that opens no tag is text.
                self.write("<");
                self.pos = lt + 1;
            }
        }
        Ok(())
    }

    fn text(&mut self, start: usize, end: usize) {
        if start < end {
            let raw = self.src.get(start..end).unwrap_or_default();
            self.write(&decode_entities(raw));
        }
    }

    fn write(&mut self, decoded: &str) {
        if self.suppressed == 0 {
            self.writer.text(decoded);
        }
    }

    /// Parses the tag at `self.pos` (which is at `<`), moving past it.
    fn tag(&mut self) -> Option<Tag> {
        let bytes = self.src.as_bytes();
        let mut i = self.pos + 1;
        let closing = bytes.get(i) == Some(&b'/');
        if closing {
            i += 1;
        }
        if !bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
            return None;
        }
        let name_start = i;
        while bytes.get(i).is_some_and(|&b| is_name_byte(b)) {
            i += 1;
        }
        let name = self.src.get(name_start..i)?.to_ascii_lowercase();
        let mut attrs = Vec::new();
        let mut self_closing = false;
        loop {
            while bytes.get(i).is_some_and(|&b| b.is_ascii_whitespace() || b == b'/') {
                i += 1;
            }
            match bytes.get(i) {
                None => break,
                Some(b'>') => {
                    self_closing = bytes.get(i.wrapping_sub(1)) == Some(&b'/');
                    i += 1;
                    break;
                }
                Some(_) => {}
            }
            let key_start = i;
            while bytes.get(i).is_some_and(|&b| !b.is_ascii_whitespace() && !matches!(b, b'=' | b'>' | b'/')) {
                i += 1;
            }
            // A lone `=` or similar: step over it so the loop always advances.
            if i == key_start {
                i += 1;
                continue;
            }
            let key = self.src.get(key_start..i)?.to_ascii_lowercase();
            let mut j = i;
            while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                j += 1;
            }
            let mut value = String::new();
            if bytes.get(j) == Some(&b'=') {
                j += 1;
                while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                let (raw, end) = match bytes.get(j) {
                    Some(&quote @ (b'"' | b'\'')) => match find_byte(bytes, j + 1, quote) {
                        Some(close) => (self.src.get(j + 1..close)?, close + 1),
                        None => (self.src.get(j + 1..)?, bytes.len()),
                    },
                    _ => {
                        let mut k = j;
                        while bytes.get(k).is_some_and(|&b| !b.is_ascii_whitespace() && b != b'>') {
                            k += 1;
                        }
                        (self.src.get(j..k)?, k)
                    }
                };
                value = decode_entities(raw).into_owned();
                i = end;
            }
            attrs.push((key, value));
        }
        self.pos = i;
        Some(Tag { name, closing, self_closing, attrs })
    }

    fn handle(&mut self, tag: Tag) -> Result<(), ExtractError> {
        let name = tag.name.as_str();
        if SUPPRESSED.contains(&name) {
            if tag.closing {
                self.suppressed = self.suppressed.saturating_sub(1);
            } else if !(tag.self_closing && name == "svg") {
                self.suppressed += 1;
            }
            return Ok(());
        }
        if !tag.closing && RAW_TEXT_HIDDEN.contains(&name) {
            // Browsers ignore `/>` here too: everything up to the end tag is script.
            self.skip_raw_text(name);
            return Ok(());
        }
        if self.suppressed > 0 {
            return Ok(());
        }
        if !tag.closing && name == "title" {
            let start = self.pos;
            let end = self.skip_raw_text("title");
            if self.title.is_none() {
                let raw = self.src.get(start..end).unwrap_or_default();
                self.title = collapse(&decode_entities(raw));
            }
            return Ok(());
        }
        if !tag.closing && name == "meta" {
            return self.meta_tag(&tag);
        }
        let w = &mut self.writer;
        if let Some(level) = heading_level(name) {
            if tag.closing {
                if level == 1 && self.first_h1.is_none() && w.heading == Some(1) {
                    self.first_h1 = collapse(&w.line);
                }
                w.block(Break::Paragraph);
                w.heading = None;
                w.prefix.clear();
            } else {
                w.block(Break::Paragraph);
                w.heading = Some(level);
                w.prefix = format!("{} ", "#".repeat(level));
            }
        } else if name == "li" {
            w.block(Break::Line);
            if !tag.closing {
                w.prefix = "- ".to_owned();
            }
        } else if name == "br" {
            if w.heading.is_some() {
                w.space();
            } else {
                w.block(Break::Line);
            }
        } else if name == "pre" {
            w.block(Break::Paragraph);
            w.pre_depth = if tag.closing { w.pre_depth.saturating_sub(1) } else { w.pre_depth + 1 };
        } else if PARAGRAPH_BLOCKS.contains(&name) {
            w.block(Break::Paragraph);
        } else if LINE_BLOCKS.contains(&name) {
            w.block(Break::Line);
        } else if CELLS.contains(&name) {
            w.space();
        }
        Ok(())
    }

    fn meta_tag(&mut self, tag: &Tag) -> Result<(), ExtractError> {
        let Some(name) = tag.attr("name") else {
            return Ok(());
        };
        let Some(key) = name.trim().to_ascii_lowercase().strip_prefix("perimeter:").map(str::to_owned) else {
            return Ok(());
        };
        if matches!(key.as_str(), "label" | "collection" | "groups") {
            let content = tag.attr("content").unwrap_or_default().trim().to_owned();
            self.meta.set(&key, Value::Scalar(content))?;
        }
        Ok(())
    }

    /// Moves past the end tag `</name …>`, or to the end of input. Returns where the raw text
    /// ends.
    fn skip_raw_text(&mut self, name: &str) -> usize {
        let bytes = self.src.as_bytes();
        let mut from = self.pos;
        while let Some(lt) = find(bytes, from, b"</") {
            let name_end = lt + 2 + name.len();
            let matches_name =
                bytes.get(lt + 2..name_end).is_some_and(|candidate| candidate.eq_ignore_ascii_case(name.as_bytes()));
            let terminated = bytes.get(name_end).is_none_or(|&b| b.is_ascii_whitespace() || b == b'>' || b == b'/');
            if matches_name && terminated {
                self.pos = find_byte(bytes, name_end, b'>').map_or(bytes.len(), |gt| gt + 1);
                return lt;
            }
            from = lt + 2;
        }
        self.pos = bytes.len();
        bytes.len()
    }
}

fn heading_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', digit @ b'1'..=b'6'] => Some(usize::from(digit - b'0')),
        _ => None,
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_')
}

fn find_byte(bytes: &[u8], from: usize, needle: u8) -> Option<usize> {
    bytes.get(from..)?.iter().position(|&b| b == needle).map(|p| from + p)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

/// Whitespace collapsed to single spaces and trimmed; `None` when nothing is left.
fn collapse(text: &str) -> Option<String> {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!collapsed.is_empty()).then_some(collapsed)
}

/// Decodes character references. Unknown or malformed references are kept as written.
pub(crate) fn decode_entities(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains('&') {
        return raw.into();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match decode_one(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

/// Decodes the reference at the start of `s` (which starts with `&`): the character and the
/// number of bytes consumed, semicolon included.
fn decode_one(s: &str) -> Option<(char, usize)> {
    // Every known reference is shorter than this; bounding it keeps the scan short.
    let semi = s.bytes().take(34).position(|b| b == b';')?;
    let body = &s[1..semi];
    let c = if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) if !hex.is_empty() && hex.len() <= 8 => u32::from_str_radix(hex, 16).ok()?,
            None if !num.is_empty() && num.len() <= 10 => num.parse::<u32>().ok()?,
            _ => return None,
        };
        // NUL, surrogates and out-of-range values become U+FFFD, as browsers do.
        char::from_u32(code).filter(|&c| c != '\0').unwrap_or('\u{fffd}')
    } else {
        named_entity(body)?
    };
    Some((c, semi + 1))
}

fn named_entity(name: &str) -> Option<char> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ensp" => '\u{2002}',
        "emsp" => '\u{2003}',
        "thinsp" => '\u{2009}',
        "shy" => '\u{ad}',
        "pound" => '£',
        "euro" => '€',
        "yen" => '¥',
        "cent" => '¢',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "sect" => '§',
        "para" => '¶',
        "deg" => '°',
        "plusmn" => '±',
        "times" => '×',
        "divide" => '÷',
        "micro" => 'µ',
        "middot" => '·',
        "bull" => '•',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "iexcl" => '¡',
        "iquest" => '¿',
        "dagger" => '†',
        "larr" => '←',
        "rarr" => '→',
        "uarr" => '↑',
        "darr" => '↓',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "atilde" => 'ã',
        "auml" => 'ä',
        "aring" => 'å',
        "aelig" => 'æ',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "igrave" => 'ì',
        "iacute" => 'í',
        "icirc" => 'î',
        "iuml" => 'ï',
        "ntilde" => 'ñ',
        "ograve" => 'ò',
        "oacute" => 'ó',
        "ocirc" => 'ô',
        "otilde" => 'õ',
        "ouml" => 'ö',
        "oslash" => 'ø',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "yacute" => 'ý',
        "szlig" => 'ß',
        "Agrave" => 'À',
        "Aacute" => 'Á',
        "Acirc" => 'Â',
        "Auml" => 'Ä',
        "Aring" => 'Å',
        "AElig" => 'Æ',
        "Ccedil" => 'Ç',
        "Egrave" => 'È',
        "Eacute" => 'É',
        "Ecirc" => 'Ê',
        "Iacute" => 'Í',
        "Ntilde" => 'Ñ',
        "Oacute" => 'Ó',
        "Ouml" => 'Ö',
        "Oslash" => 'Ø',
        "Uacute" => 'Ú',
        "Uuml" => 'Ü',
        _ => return None,
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_types::Level;

    fn text(html: &str) -> String {
        match extract(html.as_bytes()) {
            Ok(extracted) => extracted.text,
            Err(err) => format!("error: {err}"),
        }
    }

    #[test]
    fn hidden_content_is_dropped() {
        let cases = [
            ("<p>a</p><script>alert('<p>x</p>')</script><p>b</p>", "a\n\nb"),
            ("<style>p { color: red }</style>Visible", "Visible"),
            ("<SCRIPT type=x>if (a </b) {}</ScRiPt >after", "after"),
            ("x<script>never closed <p>hidden", "x"),
            ("a<!-- <p>comment</p> -->b", "ab"),
            ("a<!-- unterminated comment", "a"),
            ("<noscript><p>enable js</p></noscript>shown", "shown"),
            ("<template><div><template>in</template>still</div></template>out", "out"),
            ("<svg><title>icon</title><text>chart</text></svg>label", "label"),
            ("<svg/>after <svg viewBox='0 0 1 1' />svg", "after svg"),
            ("<!DOCTYPE html><?xml version='1.0'?>text", "text"),
            ("<head><meta charset=utf-8><link rel=x></head><body>body</body>", "body"),
        ];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "input: {input}");
        }
    }

    #[test]
    fn entities_are_decoded() {
        let cases = [
            ("Fish &amp; chips &lt;3 &gt; &quot;q&quot; &#39;s", "Fish & chips <3 > \"q\" 's"),
            ("&pound;5 &euro;6 caf&eacute; a&mdash;b 1&ndash;2 wait&hellip; &copy;", "£5 €6 café a—b 1–2 wait… ©"),
            ("&#123;&#x41;&#X42;&#x1F600;", "{AB😀"),
            ("a&nbsp;&nbsp;b", "a b"),
            ("&unknown; &amp &#; &#xZZ; & alone", "&unknown; &amp &#; &#xZZ; & alone"),
            ("&#0;&#xD800;&#99999999;", "\u{fffd}\u{fffd}\u{fffd}"),
            ("&lt;p&gt;not a tag&lt;/p&gt;", "<p>not a tag</p>"),
        ];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "input: {input}");
        }
    }

    #[test]
    fn structure_becomes_markdown() {
        let html = "<html><head><title> The &amp; Title </title></head><body>\
            <h1>Leave   policy</h1><p>Intro\n   text <b>bold</b>.</p>\
            <h2>Carry-over</h2><ul><li>First</li><li>Second <i>item</i></li></ul>\
            <div>Line one<br>Line two</div><table><tr><td>a</td><td>b</td></tr>\
            <tr><th>c</th><td>d</td></tr></table><pre>  code\n    indented</pre></body></html>";
        let extracted = extract(html.as_bytes());
        let expected = "# Leave policy\n\nIntro text bold.\n\n## Carry-over\n\n- First\n- Second item\
            \n\nLine one\nLine two\n\na b\nc d\n\ncode\n    indented";
        assert_eq!(extracted.as_ref().map(|e| e.text.as_str()), Ok(expected));
        assert_eq!(extracted.map(|e| e.title), Ok(Some("The & Title".to_owned())));
    }

    #[test]
    fn title_falls_back_to_first_h1() {
        let extracted = extract(b"<h2>Sub</h2><h1>Main <br> heading</h1><h1>Other</h1>");
        assert_eq!(extracted.as_ref().map(|e| e.title.clone()), Ok(Some("Main heading".into())));
        assert_eq!(extracted.map(|e| e.text), Ok("## Sub\n\n# Main heading\n\n# Other".into()));
    }

    #[test]
    fn meta_tags_set_front_matter() {
        let html = r#"<meta name="perimeter:label" content="Restricted">
            <META NAME='perimeter:collection' CONTENT='finance'>
            <meta content="Finance, Board " name=perimeter:groups>
            <meta name="title" content="ignored"><meta name="perimeter:title" content="ignored">
            <p>body</p>"#;
        let meta = extract(html.as_bytes()).map(|e| e.meta);
        let expected = crate::FrontMatter {
            title: None,
            collection: Some("finance".into()),
            label: Some(Level::Restricted),
            groups: Some(vec!["finance".into(), "board".into()]),
        };
        assert_eq!(meta, Ok(expected));
        let bad = extract(br#"<meta name="perimeter:label" content="secret"><p>x</p>"#);
        assert!(matches!(bad, Err(ExtractError::Malformed { format: "html", .. })), "{bad:?}");
    }

    #[test]
    fn awkward_markup_is_tolerated() {
        let cases = [
            ("a < b and c<", "a < b and c<"),
            ("<p title='x > y'>quoted</p>", "quoted"),
            ("<a href=\"unclosed>text", ""),
            ("<p>unclosed <b>tags", "unclosed tags"),
            ("</>x</ p>y", "</>x</ p>y"),
            ("<p =x ==y z=>ok</p>", "ok"),
            ("<", "<"),
            ("<3 you", "<3 you"),
        ];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "input: {input}");
        }
        // Invalid UTF-8 is replaced, not refused.
        assert_eq!(text_bytes(b"caf\xe9 <b>ok</b>"), "caf\u{fffd} ok");
    }

    fn text_bytes(bytes: &[u8]) -> String {
        extract(bytes).map(|e| e.text).unwrap_or_default()
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift64: deterministic pseudo-random input without a dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const ALPHABET: &[u8] = b"<>/!-=\"'&#;x ab\nscript style svg p h1 li meta name content \xc3\xa9\xff";
        for round in 0..600 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if round % 3 == 0 {
                        r as u8
                    } else {
                        ALPHABET[(r % ALPHABET.len() as u64) as usize]
                    }
                })
                .collect();
            // Any result is fine; the point is that it returns.
            let _ = extract(&bytes);
        }
    }
}
