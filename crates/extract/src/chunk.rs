//! Structure-aware chunking: markdown-flavoured text in, token-bounded chunks out.
//!
//! The text is first cut into blocks (headings, paragraphs, list items, fenced code), then
//! blocks are packed into chunks section by section. A block too large for a chunk is cut
//! more finely only then: into sentences (or lines, for code), words, and finally halves of a
//! word at character boundaries. Every chunk is an exact byte range of the input, so a
//! passage can always be traced back to where it came from.
//!
//! `count_tokens` may run a real tokenizer, so it is called on each block and on each piece
//! of a block that had to be cut, then once on each finished chunk to check the sum: the
//! number of bytes it sees grows linearly with the input, not quadratically.

use std::collections::VecDeque;

/// How large chunks may be, and how much consecutive chunks should share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpec {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

/// One chunk: `text == source[start..end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    /// The heading path in effect where the chunk starts, e.g. `Annual leave > Carry-over`.
    pub heading: Option<String>,
    pub start: usize,
    pub end: usize,
    /// `count_tokens(&text)`.
    pub token_count: usize,
}

/// Cuts `text` into chunks of at most `spec.max_tokens` tokens, in document order, together
/// covering all of its non-whitespace content. Consecutive chunks of one section share about
/// `spec.overlap_tokens` tokens. Only a single character that alone exceeds the budget makes
/// a chunk larger than `max_tokens`.
pub fn chunk(text: &str, spec: &ChunkSpec, count_tokens: &dyn Fn(&str) -> usize) -> Vec<Chunk> {
    let mut sections: Vec<Option<String>> = vec![None];
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut queue = VecDeque::new();
    for block in parse_blocks(text) {
        let kind = match block.kind {
            BlockKind::Heading { level, title } => {
                while path.last().is_some_and(|(open, _)| *open >= level) {
                    path.pop();
                }
                path.push((level, title));
                sections.push(heading_path(&path));
                Kind::Heading
            }
            BlockKind::Text => Kind::Block,
            BlockKind::Code => Kind::Code,
        };
        queue.push_back(Unit {
            start: block.start,
            end: block.end,
            tokens: count_tokens(&text[block.start..block.end]),
            section: sections.len() - 1,
            kind,
            heading: kind == Kind::Heading,
        });
    }
    Packer { text, spec, count_tokens, sections, queue, current: Vec::new(), current_tokens: 0, chunks: Vec::new() }
        .run()
}

/// The text of the first level-1 markdown heading, outside code blocks.
pub(crate) fn first_h1(text: &str) -> Option<String> {
    parse_blocks(text).into_iter().find_map(|block| match block.kind {
        BlockKind::Heading { level: 1, title } if !title.is_empty() => Some(title),
        _ => None,
    })
}

struct Block {
    start: usize,
    end: usize,
    kind: BlockKind,
}

enum BlockKind {
    Heading {
        level: usize,
        title: String,
    },
    /// A paragraph or a list item.
    Text,
    Code,
}

/// Splits text into blocks. Ranges are trimmed of surrounding whitespace.
fn parse_blocks(text: &str) -> Vec<Block> {
    let lines = line_spans(text);
    let line = |i: usize| &text[lines[i].0..lines[i].1];
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let current = line(i);
        if current.trim().is_empty() {
            i += 1;
            continue;
        }
        if let Some(fence) = fence_open(current) {
            // An unclosed fence runs to the end, as in CommonMark.
            let mut last = i + 1;
            while last < lines.len() && !fence_closes(line(last), fence) {
                last += 1;
            }
            let last = last.min(lines.len() - 1);
            blocks.extend(trimmed(text, lines[i].0, lines[last].1, BlockKind::Code));
            i = last + 1;
            continue;
        }
        if let Some((level, title)) = atx_heading(current) {
            blocks.extend(trimmed(text, lines[i].0, lines[i].1, BlockKind::Heading { level, title }));
            i += 1;
            continue;
        }
        let mut next = i + 1;
        while next < lines.len() {
            let candidate = line(next);
            if candidate.trim().is_empty()
                || fence_open(candidate).is_some()
                || atx_heading(candidate).is_some()
                || is_list_item(candidate)
            {
                break;
            }
            next += 1;
        }
        blocks.extend(trimmed(text, lines[i].0, lines[next - 1].1, BlockKind::Text));
        i = next;
    }
    blocks
}

/// Byte ranges of the lines of `text`, without their `\n`.
fn line_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            spans.push((start, i));
            start = i + 1;
        }
    }
    if start < text.len() {
        spans.push((start, text.len()));
    }
    spans
}

fn trimmed(text: &str, start: usize, end: usize, kind: BlockKind) -> Option<Block> {
    let (start, end) = trim_range(text, start, end)?;
    Some(Block { start, end, kind })
}

/// `start..end` without leading and trailing whitespace; `None` if nothing is left.
fn trim_range(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let slice = text.get(start..end)?;
    let lead = slice.len() - slice.trim_start().len();
    let kept = slice.trim().len();
    (kept > 0).then_some((start + lead, start + lead + kept))
}

#[derive(Clone, Copy)]
struct Fence {
    marker: char,
    len: usize,
}

fn fence_open(line: &str) -> Option<Fence> {
    let trimmed = line.trim_start();
    let marker = trimmed.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let len = trimmed.chars().take_while(|&c| c == marker).count();
    (len >= 3).then_some(Fence { marker, len })
}

fn fence_closes(line: &str, fence: Fence) -> bool {
    let trimmed = line.trim();
    trimmed.chars().count() >= fence.len && trimmed.chars().all(|c| c == fence.marker)
}

/// An ATX heading: up to three spaces, one to six `#`, then a space or the end of the line.
/// Returns the level and the title without the optional closing `#`s.
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let rest = line.trim_end();
    let indent = rest.len() - rest.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &rest[indent..];
    let level = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let title = after.trim();
    let without_closing = title.trim_end_matches('#');
    let title = if without_closing.is_empty() {
        ""
    } else if without_closing.ends_with([' ', '\t']) {
        without_closing.trim_end()
    } else {
        title
    };
    Some((level, title.to_owned()))
}

fn is_list_item(line: &str) -> bool {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix(['-', '*', '+']) {
        return rest.starts_with([' ', '\t']);
    }
    let digits = trimmed.len() - trimmed.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if !(1..=9).contains(&digits) {
        return false;
    }
    trimmed[digits..].strip_prefix(['.', ')']).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn heading_path(path: &[(usize, String)]) -> Option<String> {
    let titles: Vec<&str> = path.iter().map(|(_, title)| title.as_str()).filter(|t| !t.is_empty()).collect();
    (!titles.is_empty()).then(|| titles.join(" > "))
}

/// How a unit came to be, which decides how it is cut further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Heading,
    Block,
    Code,
    Sentence,
    Word,
    Fragment,
}

/// A byte range with its token count: a block or a piece of one.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    section: usize,
    kind: Kind,
    /// A heading line (or the first piece of one): it opens a section and must not end a
    /// chunk.
    heading: bool,
}

struct Entry {
    unit: Unit,
    /// Repeated from the previous chunk: context, not new content.
    overlap: bool,
}

/// Overlap being collected from the end of an emitted chunk, last unit first.
struct Overlap {
    budget: usize,
    chunk_start: usize,
    tokens: usize,
    picked: Vec<Unit>,
}

impl Overlap {
    /// Takes a unit if it fits. Headings are never repeated, and overlap must start after the
    /// emitted chunk did, or chunks would not advance.
    fn take(&mut self, unit: &Unit) -> bool {
        let fits = !unit.heading && unit.start > self.chunk_start && self.tokens + unit.tokens <= self.budget;
        if fits {
            self.tokens += unit.tokens;
            self.picked.push(*unit);
        }
        fits
    }
}

struct Packer<'a> {
    text: &'a str,
    spec: &'a ChunkSpec,
    count_tokens: &'a dyn Fn(&str) -> usize,
    sections: Vec<Option<String>>,
    queue: VecDeque<Unit>,
    current: Vec<Entry>,
    /// Sum of the units' own counts: an estimate of the current chunk's count.
    current_tokens: usize,
    chunks: Vec<Chunk>,
}

impl Packer<'_> {
    fn run(mut self) -> Vec<Chunk> {
        let max = self.spec.max_tokens;
        loop {
            let Some(unit) = self.queue.pop_front() else {
                if self.current.is_empty() {
                    break;
                }
                self.flush();
                continue;
            };
            if unit.heading && self.has_body() {
                // A heading starts a new chunk.
                self.queue.push_front(unit);
                self.flush();
            } else if self.current_tokens + unit.tokens <= max {
                self.push(unit, false);
            } else if unit.tokens <= max && self.has_body() {
                self.queue.push_front(unit);
                self.flush();
            } else if let Some(pieces) = self.refine(&unit) {
                // Too large for any chunk, or it must share one with its heading: cut finer
                // and let the pieces fill the current chunk.
                for piece in pieces.into_iter().rev() {
                    self.queue.push_front(piece);
                }
            } else if !self.current.is_empty() {
                // Indivisible and too large to join what is here: it starts the next chunk.
                self.queue.push_front(unit);
                self.flush();
            } else {
                // A single character over budget: nothing smaller exists.
                self.push(unit, false);
            }
        }
        self.chunks
    }

    fn has_body(&self) -> bool {
        self.current.iter().any(|e| !e.overlap && !e.unit.heading)
    }

    fn push(&mut self, unit: Unit, overlap: bool) {
        self.current_tokens += unit.tokens;
        self.current.push(Entry { unit, overlap });
    }

    fn pop(&mut self) -> Option<Unit> {
        let entry = self.current.pop()?;
        self.current_tokens -= entry.unit.tokens;
        Some(entry.unit)
    }

    /// Emits the current chunk after checking its real token count, then seeds the next chunk
    /// with overlap. Summed counts can undercount (separators between units are tokens too),
    /// so a chunk over budget first loses its overlap, then its last units, which go back to
    /// the queue.
    fn flush(&mut self) {
        let max = self.spec.max_tokens;
        loop {
            let (Some(first), Some(last)) = (self.current.first(), self.current.last()) else {
                return;
            };
            let (start, end) = (first.unit.start, last.unit.end);
            let tokens = (self.count_tokens)(&self.text[start..end]);
            if tokens <= max || self.current.len() == 1 {
                self.emit(start, end, tokens);
                break;
            }
            if first.overlap {
                let dropped = self.current.remove(0);
                self.current_tokens -= dropped.unit.tokens;
                continue;
            }
            // Overlap is gone, so the chunk is a run of headings and then its content units.
            // Give back enough trailing content units to cover the excess, keeping one.
            let body = |packer: &Self| packer.current.iter().filter(|e| !e.unit.heading).count();
            if body(self) >= 2 {
                let excess = tokens - max;
                let mut freed = 0;
                while freed < excess && body(self) >= 2 {
                    if let Some(unit) = self.pop() {
                        freed += unit.tokens;
                        self.queue.push_front(unit);
                    }
                }
                continue;
            }
            // One unit (after its headings) over budget on its own: cut it finer and repack.
            let Some(last) = self.pop() else { return };
            match self.refine(&last) {
                Some(pieces) => {
                    for piece in pieces.into_iter().rev() {
                        self.queue.push_front(piece);
                    }
                    while let Some(unit) = self.pop() {
                        self.queue.push_front(unit);
                    }
                    return;
                }
                // Indivisible: the budget outranks keeping a heading with its text.
                None => self.queue.push_front(last),
            }
        }
        self.seed_overlap();
    }

    fn emit(&mut self, start: usize, end: usize, token_count: usize) {
        let heading = self.current.first().and_then(|e| self.sections.get(e.unit.section).cloned().flatten());
        self.chunks.push(Chunk { text: self.text[start..end].to_owned(), heading, start, end, token_count });
    }

    /// Replaces the emitted chunk with the units at its end that fit the overlap budget,
    /// leaving room for the next unit: whole blocks, else whole sentences, else (only when not
    /// even one sentence fits) words.
    fn seed_overlap(&mut self) {
        let previous = std::mem::take(&mut self.current);
        self.current_tokens = 0;
        let (Some(next), Some(first)) = (self.queue.front(), previous.first()) else {
            return;
        };
        if next.heading {
            return;
        }
        let mut overlap = Overlap {
            budget: self.spec.overlap_tokens.min(self.spec.max_tokens.saturating_sub(next.tokens)),
            chunk_start: first.unit.start,
            tokens: 0,
            picked: Vec::new(),
        };
        for entry in previous.iter().rev() {
            if !overlap.take(&entry.unit) {
                self.take_tail(&entry.unit, &mut overlap);
                break;
            }
        }
        for unit in overlap.picked.into_iter().rev() {
            self.push(unit, true);
        }
    }

    /// Takes the trailing pieces of a unit too large to repeat whole.
    fn take_tail(&self, unit: &Unit, overlap: &mut Overlap) {
        let cuttable = match unit.kind {
            Kind::Block | Kind::Code => true,
            // Part of a sentence only when no whole sentence could be repeated.
            Kind::Sentence => overlap.picked.is_empty(),
            Kind::Heading | Kind::Word | Kind::Fragment => false,
        };
        if unit.heading || !cuttable || overlap.budget == 0 {
            return;
        }
        let Some(pieces) = self.refine(unit) else {
            return;
        };
        // A block of one sentence is cut straight into words.
        let words_only = pieces.iter().any(|p| p.kind != Kind::Sentence);
        if words_only && !overlap.picked.is_empty() {
            return;
        }
        let before = overlap.picked.len();
        for piece in pieces.iter().rev() {
            if !overlap.take(piece) {
                if overlap.picked.len() == before {
                    self.take_tail(piece, overlap);
                }
                break;
            }
        }
        // A few stray words of a sentence are noise, not context.
        if words_only && overlap.tokens * 2 < self.spec.overlap_tokens {
            overlap.picked.clear();
            overlap.tokens = 0;
        }
    }

    /// Cuts a unit one level finer, skipping levels that would not cut it at all. `None` for
    /// a single character.
    fn refine(&self, unit: &Unit) -> Option<Vec<Unit>> {
        let cuts: &[Cut] = match unit.kind {
            Kind::Heading | Kind::Block => &[Cut::Sentences, Cut::Words, Cut::Halves],
            Kind::Code => &[Cut::Lines, Cut::Words, Cut::Halves],
            Kind::Sentence => &[Cut::Words, Cut::Halves],
            Kind::Word | Kind::Fragment => &[Cut::Halves],
        };
        for &cut in cuts {
            let (start, end) = (unit.start, unit.end);
            let (ranges, kind) = match cut {
                Cut::Sentences => (split_sentences(self.text, start, end, false), Kind::Sentence),
                Cut::Lines => (split_sentences(self.text, start, end, true), Kind::Sentence),
                Cut::Words => (split_words(self.text, start, end), Kind::Word),
                Cut::Halves => (split_halves(self.text, start, end), Kind::Fragment),
            };
            if ranges.len() < 2 {
                continue;
            }
            let pieces = ranges
                .into_iter()
                .enumerate()
                .map(|(i, (start, end))| Unit {
                    start,
                    end,
                    tokens: (self.count_tokens)(&self.text[start..end]),
                    section: unit.section,
                    kind,
                    heading: unit.heading && i == 0,
                })
                .collect();
            return Some(pieces);
        }
        None
    }
}

/// The ways of cutting a unit, coarsest first.
#[derive(Clone, Copy)]
enum Cut {
    Sentences,
    Lines,
    Words,
    Halves,
}

/// Sentences of `text[start..end]`: cut after `.`, `?` or `!` followed by whitespace, after
/// CJK full stops, and at newlines. With `lines_only`, only at newlines.
fn split_sentences(text: &str, start: usize, end: usize, lines_only: bool) -> Vec<(usize, usize)> {
    let slice = &text[start..end];
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut chars = slice.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let cut = match c {
            '\n' => Some(i),
            _ if lines_only => None,
            '.' | '?' | '!' => chars.peek().filter(|(_, next)| next.is_whitespace()).map(|_| i + c.len_utf8()),
            '。' | '？' | '！' => Some(i + c.len_utf8()),
            _ => None,
        };
        if let Some(cut) = cut {
            pieces.extend(trim_range(text, start + piece_start, start + cut));
            piece_start = cut;
        }
    }
    pieces.extend(trim_range(text, start + piece_start, end));
    pieces
}

/// Whitespace-separated words of `text[start..end]`.
fn split_words(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut words = Vec::new();
    let mut word_start = None;
    for (i, c) in text[start..end].char_indices() {
        match (c.is_whitespace(), word_start) {
            (true, Some(s)) => {
                words.push((start + s, start + i));
                word_start = None;
            }
            (false, None) => word_start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = word_start {
        words.push((start + s, end));
    }
    words
}

/// Two halves of `text[start..end]` by character count, so never inside a character.
fn split_halves(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let slice = &text[start..end];
    let half = slice.chars().count() / 2;
    match slice.char_indices().nth(half) {
        Some((mid, _)) if mid > 0 => vec![(start, start + mid), (start + mid, end)],
        _ => vec![(start, end)],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::Cell;

    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn spec(max_tokens: usize, overlap_tokens: usize) -> ChunkSpec {
        ChunkSpec { max_tokens, overlap_tokens }
    }

    /// The invariants every chunking must satisfy, whatever the input.
    fn check_invariants(text: &str, spec: &ChunkSpec, count: &dyn Fn(&str) -> usize, chunks: &[Chunk]) {
        let mut covered = vec![false; text.len()];
        let mut previous: Option<&Chunk> = None;
        for chunk in chunks {
            assert_eq!(text.get(chunk.start..chunk.end), Some(chunk.text.as_str()), "{chunk:?}");
            assert!(!chunk.text.trim().is_empty(), "{chunk:?}");
            assert_eq!(chunk.token_count, count(&chunk.text), "{chunk:?}");
            let single_char = chunk.text.chars().count() == 1;
            assert!(chunk.token_count <= spec.max_tokens || single_char, "{spec:?} {chunk:?}");
            if let Some(previous) = previous {
                assert!(chunk.start > previous.start, "order: {previous:?} then {chunk:?}");
                assert!(chunk.end > previous.end, "order: {previous:?} then {chunk:?}");
            }
            covered[chunk.start..chunk.end].iter_mut().for_each(|c| *c = true);
            previous = Some(chunk);
        }
        for (i, c) in text.char_indices() {
            assert!(c.is_whitespace() || covered[i], "byte {i} ({c:?}) not covered");
        }
    }

    fn run(text: &str, spec: &ChunkSpec) -> Vec<Chunk> {
        let chunks = chunk(text, spec, &words);
        check_invariants(text, spec, &words, &chunks);
        chunks
    }

    /// Where every heading fits the budget with room to spare, no chunk ends with one.
    fn assert_no_dangling_headings(text: &str, chunks: &[Chunk]) {
        let heading_ends: Vec<usize> = parse_blocks(text)
            .into_iter()
            .filter(|b| matches!(b.kind, BlockKind::Heading { .. }))
            .map(|b| b.end)
            .collect();
        for chunk in chunks {
            assert!(!heading_ends.contains(&chunk.end), "dangling heading: {chunk:?}");
        }
    }

    const HANDBOOK: &str = "Preamble before any heading.\n\n\
        # Annual leave\n\n\
        Staff receive 25 days. Leave is booked in the portal.\n\n\
        ## Carry-over\n\n\
        Up to five days carry over. The rest is lost.\n\n\
        - Ask your manager first.\n\
        - Record it in the portal.\n\n\
        ### Exceptions ###\n\n\
        Parental leave is separate.\n\n\
        ## Sickness\n\n\
        ```text\n\
        # not a heading\n\
        call in by 9am\n\
        ```\n\n\
        # Expenses\n\
        Receipts are required.\n";

    #[test]
    fn heading_paths_follow_the_outline() {
        let chunks = run(HANDBOOK, &spec(13, 0));
        assert_no_dangling_headings(HANDBOOK, &chunks);
        let got: Vec<(Option<&str>, &str)> = chunks.iter().map(|c| (c.heading.as_deref(), c.text.as_str())).collect();
        let expected = vec![
            (None, "Preamble before any heading."),
            (Some("Annual leave"), "# Annual leave\n\nStaff receive 25 days. Leave is booked in the portal."),
            (Some("Annual leave > Carry-over"), "## Carry-over\n\nUp to five days carry over. The rest is lost."),
            (Some("Annual leave > Carry-over"), "- Ask your manager first.\n- Record it in the portal."),
            (Some("Annual leave > Carry-over > Exceptions"), "### Exceptions ###\n\nParental leave is separate."),
            (Some("Annual leave > Sickness"), "## Sickness\n\n```text\n# not a heading\ncall in by 9am\n```"),
            (Some("Expenses"), "# Expenses\nReceipts are required."),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn headings_never_dangle_at_any_reasonable_budget() {
        for max in 6..40 {
            for overlap in [0, 2, 5] {
                let chunks = run(HANDBOOK, &spec(max, overlap));
                assert_no_dangling_headings(HANDBOOK, &chunks);
                // Every chunk's heading is the path of the section its first line is in.
                for c in &chunks {
                    if c.text.starts_with("## Carry-over") || c.text.starts_with("- Ask") {
                        assert_eq!(c.heading.as_deref(), Some("Annual leave > Carry-over"));
                    }
                }
            }
        }
    }

    #[test]
    fn large_budget_still_starts_a_chunk_at_each_heading() {
        let chunks = run(HANDBOOK, &spec(1000, 50));
        assert_eq!(chunks.len(), 6);
        assert!(chunks.iter().skip(1).all(|c| c.text.starts_with('#')));
        assert_eq!(chunks[2].heading.as_deref(), Some("Annual leave > Carry-over"));
    }

    #[test]
    fn consecutive_headings_stay_with_their_content() {
        let text = "# A\n## B\n### C\nbody text here\n\n# D\n\nmore";
        let chunks = run(text, &spec(50, 0));
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["# A\n## B\n### C\nbody text here", "# D\n\nmore"]);
        assert_eq!(chunks[0].heading.as_deref(), Some("A"));
    }

    #[test]
    fn long_paragraphs_split_at_sentences_with_overlap() {
        let sentences: Vec<String> = (0..30).map(|i| format!("Sentence number {i} has exactly seven words.")).collect();
        let text = format!("# Policy\n\n{}", sentences.join(" "));
        let chunks = run(&text, &spec(40, 10));
        assert!(chunks.len() > 5, "{chunks:#?}");
        assert_no_dangling_headings(&text, &chunks);
        for pair in chunks.windows(2) {
            assert!(pair[1].start < pair[0].end, "no overlap: {:?} / {:?}", pair[0], pair[1]);
            // Overlap and cuts fall on sentence boundaries.
            assert!(pair[1].text.starts_with("Sentence"), "{:?}", pair[1].text);
            assert!(pair[0].text.ends_with('.'), "{:?}", pair[0].text);
        }
        assert!(chunks.iter().all(|c| c.heading.as_deref() == Some("Policy")));
        assert!(chunks[0].text.starts_with("# Policy\n\nSentence number 0"));
    }

    #[test]
    fn no_overlap_when_not_asked_or_across_sections() {
        let sentences = "One two three four. ".repeat(20);
        let text = format!("# A\n\n{sentences}\n\n# B\n\n{sentences}");
        for chunks in [run(&text, &spec(10, 0)), run(&text, &spec(10, 4))] {
            let boundary = chunks.iter().position(|c| c.text.starts_with("# B")).unwrap();
            assert!(chunks[boundary].start >= chunks[boundary - 1].end);
        }
        let chunks = run(&text, &spec(10, 0));
        assert!(chunks.windows(2).all(|p| p[1].start >= p[0].end));
    }

    #[test]
    fn code_blocks_are_kept_whole_when_they_fit() {
        let code = "```rust\nfn main() {\n\n    println!(\"a. b\");\n}\n```";
        let text = format!("Intro words here.\n\n{code}\n\nOutro.");
        let chunks = run(&text, &spec(8, 0));
        assert!(chunks.iter().any(|c| c.text == code), "{chunks:#?}");
        // Too large for the budget: cut at lines, never mid-line.
        let chunks = run(&text, &spec(3, 0));
        assert!(chunks.iter().any(|c| c.text == "fn main() {"), "{chunks:#?}");
    }

    #[test]
    fn oversized_words_are_cut_at_char_boundaries() {
        let text = "£ € é 日本語 ".repeat(40);
        for max in [1, 2, 3, 7, 50] {
            for overlap in [0, 1, 3] {
                run(&text, &spec(max, overlap));
            }
        }
        // Counting characters rather than words forces cuts inside a "word".
        let giant = "日本語".repeat(100);
        let chars = |s: &str| s.chars().count();
        let chunks = chunk(&giant, &spec(7, 0), &chars);
        assert!(chunks.iter().all(|c| c.token_count <= 7 && giant.get(c.start..c.end) == Some(&c.text)));
        assert_eq!(chunks.iter().map(|c| c.end - c.start).sum::<usize>(), giant.len());
        // A budget no character fits: one character per chunk, never a broken one.
        let chunks = chunk("日本", &spec(0, 0), &chars);
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["日", "本"]);
    }

    #[test]
    fn empty_and_whitespace_make_no_chunks() {
        for text in ["", " ", "\n\n\t \r\n"] {
            assert!(chunk(text, &spec(10, 2), &words).is_empty());
        }
    }

    #[test]
    fn undercounting_estimates_are_corrected() {
        // Counts every newline as a token too: blocks summed separately undercount the joined
        // chunk, which must still fit.
        let count = |s: &str| words(s) + s.matches('\n').count();
        let text = (0..40).map(|i| format!("para {i} words")).collect::<Vec<_>>().join("\n\n");
        let chunks = chunk(&text, &spec(10, 3), &count);
        assert!(chunks.len() > 3);
        for c in &chunks {
            assert_eq!(c.token_count, count(&c.text));
            assert!(c.token_count <= 10, "{c:?}");
        }
        let mut covered_to = 0;
        for c in &chunks {
            assert!(c.start <= covered_to || text[covered_to..c.start].trim().is_empty());
            covered_to = covered_to.max(c.end);
        }
        assert_eq!(covered_to, text.len());
    }

    #[test]
    fn tokenizer_work_is_linear() {
        let paragraph = "Alpha beta gamma delta. Epsilon zeta eta theta iota. ".repeat(30);
        let text = format!("# T\n\n{}", [paragraph.as_str(); 40].join("\n\n"));
        let seen = Cell::new(0usize);
        let count = |s: &str| {
            seen.set(seen.get() + s.len());
            words(s)
        };
        let chunks = chunk(&text, &spec(60, 15), &count);
        assert!(chunks.len() > 50);
        assert!(seen.get() < text.len() * 6, "{} bytes counted for {}", seen.get(), text.len());
    }

    #[test]
    fn random_documents_keep_the_invariants() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const PIECES: &[&str] = &[
            "word",
            "longerword",
            "£5",
            "€",
            "é",
            "日本語",
            "naïve",
            ".",
            "?",
            "!",
            " ",
            " ",
            " ",
            "\n",
            "\n\n",
            "\n# ",
            "\n## ",
            "\n### ",
            "\n- ",
            "\n1. ",
            "\n```\n",
            "\n~~~~\n",
            "\t",
            "\r\n",
            "#",
            "。",
            "supercalifragilisticexpialidocious",
        ];
        for round in 0..300 {
            let len = (next() % 120) as usize;
            let text: String = (0..len).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect();
            let s = spec((round % 13) + 1, (next() % 6) as usize);
            run(&text, &s);
            // A counter that sees separators too, so that summed estimates undercount.
            let count = |t: &str| words(t) + t.matches('\n').count();
            check_invariants(&text, &s, &count, &chunk(&text, &s, &count));
        }
    }

    #[test]
    fn first_h1_skips_code_and_lower_levels() {
        assert_eq!(first_h1("## Two\n```\n# code\n```\n#  One  #\n# Later"), Some("One".into()));
        assert_eq!(first_h1("#NoSpace\n    # indented code"), None);
        assert_eq!(first_h1("#\n# \n# Real"), Some("Real".into()));
    }

    #[test]
    fn block_syntax() {
        let cases: [(&str, Option<(usize, &str)>); 8] = [
            ("# Title", Some((1, "Title"))),
            ("###### Six", Some((6, "Six"))),
            ("####### Seven", None),
            ("   ## Indented ##  ", Some((2, "Indented"))),
            ("## C# guide", Some((2, "C# guide"))),
            ("## Closing#", Some((2, "Closing#"))),
            ("#hashtag", None),
            ("#", Some((1, ""))),
        ];
        for (line, expected) in cases {
            let got = atx_heading(line);
            assert_eq!(got.as_ref().map(|(l, t)| (*l, t.as_str())), expected, "{line:?}");
        }
        for (line, expected) in
            [("- a", true), ("* a", true), ("12. a", true), ("3) a", true), ("-5", false), ("1.5 m", false)]
        {
            assert_eq!(is_list_item(line), expected, "{line:?}");
        }
    }
}
