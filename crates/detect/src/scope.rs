//! Scoped searches: a recogniser's pattern searched only where it can match, with the same
//! matches, in the same order, as a search of the whole text.
//!
//! A lazy-DFA pass costs about 2 ns a byte, and a finding-dense prompt woke some twenty
//! recognisers, each passing over every byte (most of a 2 KB prompt's 100 µs). Most patterns
//! can only match in a small part of the text:
//!
//! - **Runs** ([`Runs`], [`find_in_runs`]): a pattern made only of digits and number
//!   punctuation (phone, card, US taxpayer, NHS, IPv4) or of capitals, digits and spaces
//!   (IBAN, BIC, National Insurance number, postcode, ICD-10) matches inside one maximal run of
//!   those bytes. Runs are found once per text from bit masks of 64-byte blocks, and only the
//!   runs that hold enough digits or the right shape are searched.
//! - **Lines with a cue** ([`find_in_cued_lines`], [`find_in_lines`]): a keyword pattern that
//!   never spans a line break (password and secret assignments, form fields, street
//!   addresses) matches only on a line that holds its keyword or separator, found by a literal
//!   search.
//! - **Name runs** ([`name_runs`]): runs of letters and spaces with a lower-case letter, a
//!   space and a capital in a row, where a run of capitalised words can be.
//!
//! Each search of a run or line starts at its first byte, so `\b` sees the byte before, and
//! runs on the text cut one character after its end, so `\b` and `$` there see the byte after.
//! A unit test runs the detector on the labelled corpus with scoping on and off
//! (`tests::UNSCOPED`) and demands the same findings.

use regex::{Match, Regex};

/// The matches of `re` in `text` that lie in the runs `keep` accepts: the same matches, in the
/// same order, as `re.find_iter(text)` gives, provided every match of `re` consists of bytes of
/// the runs' alphabet and is at least `min_len` bytes long, and the runs `keep` rejects hold no
/// match the caller would use. A run's search stops when too little of it is left for a match.
pub(crate) fn find_in_runs<'t>(
    re: &'t Regex,
    text: &'t str,
    runs: &'t [Run],
    min_len: usize,
    keep: impl Fn(&Run) -> bool + 't,
) -> impl Iterator<Item = Match<'t>> + 't {
    let min_len = min_len.max(1);
    let scoped = runs.iter().filter(move |r| r.len() >= min_len && keep(r)).flat_map(move |r| {
        let hay = &text[..ceil_boundary(text, r.end + 1)];
        let mut at = r.start;
        std::iter::from_fn(move || {
            if r.end - at < min_len {
                return None;
            }
            let m = re.find_at(hay, at)?;
            debug_assert!(m.end() <= r.end && m.len() >= min_len, "a match outside its run");
            at = m.end().max(m.start() + 1);
            Some(m)
        })
    });
    #[cfg(test)]
    let scoped = tests::unless_unscoped(re, text, scoped);
    scoped
}

/// The matches of `re` in `text` on the lines that hold a match of `cue`: the same matches, in
/// the same order, as `re.find_iter(text)` gives, provided no match of `re` holds a line break
/// and every line holding a match of `re` holds a match of `cue` (a few literals, which the
/// regex engine finds with a vectorised search).
pub(crate) fn find_in_cued_lines<'t>(
    re: &'t Regex,
    cue: &'t Regex,
    text: &'t str,
) -> impl Iterator<Item = Match<'t>> + 't {
    find_in_lines(re, text, cue_hits(cue, text))
}

/// The first match of `cue` on each line that holds one: once a line is found, the cue search
/// resumes at the next line.
fn cue_hits<'t>(cue: &'t Regex, text: &'t str) -> impl Iterator<Item = usize> + 't {
    let mut resume = 0;
    std::iter::from_fn(move || {
        let hit = cue.find_at(text, resume)?.start();
        resume = line_end(text, hit);
        Some(hit)
    })
}

/// [`cue_hits`] collected, for [`find_in_lines`]: several patterns scoped by the same cue share
/// one cue search.
pub(crate) fn cued_lines(cue: &Regex, text: &str) -> Vec<usize> {
    cue_hits(cue, text).collect()
}

/// The matches of `re` in `text` on the lines that hold one of `hits` (positions in
/// increasing order), under the same conditions as [`find_in_cued_lines`].
pub(crate) fn find_in_lines<'t>(
    re: &'t Regex,
    text: &'t str,
    hits: impl Iterator<Item = usize> + 't,
) -> impl Iterator<Item = Match<'t>> + 't {
    let mut searched = 0;
    let scoped = hits
        .filter_map(move |hit| {
            if hit < searched {
                return None;
            }
            let start = text.as_bytes()[..hit].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let end = line_end(text, hit);
            searched = end + 1;
            // Up to and with the line break.
            let hay = &text[..(end + 1).min(text.len())];
            let mut at = start;
            Some(std::iter::from_fn(move || {
                let m = re.find_at(hay, at)?;
                debug_assert!(m.end() <= end && m.start() < m.end(), "a match outside its line");
                at = m.end().max(m.start() + 1);
                Some(m)
            }))
        })
        .flatten();
    #[cfg(test)]
    let scoped = tests::unless_unscoped(re, text, scoped);
    scoped
}

/// Positions of the bytes equal to `x` or `y`, in order, found 64 bytes at a time as a bit
/// mask (a loop the compiler vectorises).
pub(crate) fn positions_of(text: &str, x: u8, y: u8) -> impl Iterator<Item = usize> + '_ {
    text.as_bytes().chunks(64).enumerate().flat_map(move |(block, chunk)| {
        let mut flags = [0u8; 64];
        for (f, &b) in flags.iter_mut().zip(chunk) {
            *f = u8::from(b == x) | u8::from(b == y);
        }
        let mut m = pack(&flags);
        std::iter::from_fn(move || {
            (m != 0).then(|| {
                let j = m.trailing_zeros() as usize;
                m &= m - 1;
                block * 64 + j
            })
        })
    })
}

/// The runs of one text, cached on the [`NormalizedText`](crate::NormalizedText). Runs too
/// small for every pattern of their family are left out, and so are runs without a digit
/// (numeric) or without a capital followed by a capital or a digit (upper), which hold no
/// match.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    /// `[0-9 \t.\-()+]`: phone numbers, cards, US taxpayer numbers, NHS numbers, IPv4.
    pub(crate) numeric: Vec<Run>,
    /// `[A-Z0-9 \t.]`: IBAN, SWIFT/BIC, National Insurance numbers, postcodes, ICD-10 codes.
    pub(crate) upper: Vec<Run>,
}

impl Runs {
    /// Finds the runs of `text` from the bit masks of its 64-byte blocks: each seed (a byte
    /// every kept run holds) is widened to its run with bit operations, once per run.
    pub(crate) fn new(text: &str) -> Runs {
        let bytes = text.as_bytes();
        let blocks = blocks_of(bytes, Block::of);
        // Every pattern of the upper family starts with a capital and a capital or a digit.
        let upper_seeds = |b: usize| {
            let follower = |s: Option<&Block>| s.map_or(0, |s| s.capital | s.digit);
            blocks[b].capital & ((follower(blocks.get(b)) >> 1) | (follower(blocks.get(b + 1)) << 63))
        };
        let counted = |start, end| Run {
            start,
            end,
            digits: count(&blocks, |b| b.digit, start, end),
            upper: count(&blocks, |b| b.capital, start, end),
            ..Run::default()
        };
        let (mut numeric, mut upper) = (Vec::new(), Vec::new());
        // The smallest match of each family: an IPv4 address (7 bytes, 4 digits); an ICD-10
        // code (a capital and two digits) or a BIC (six capitals).
        seeded_runs(
            &blocks,
            |b| blocks[b].digit,
            |b| b.numeric,
            |start, end| {
                let r = counted(start, end);
                if r.len() >= 7 && r.digits >= 4 {
                    numeric.push(r.numeric_shape(bytes));
                }
            },
        );
        seeded_runs(
            &blocks,
            upper_seeds,
            |b| b.upper,
            |start, end| {
                let r = counted(start, end);
                if r.len() >= 3 && (r.digits >= 1 || r.upper >= 6) {
                    upper.push(r.upper_shape(bytes));
                }
            },
        );
        Runs { numeric, upper }
    }
}

/// A stretch of text whose bytes are all in one alphabet, with counts and shapes a recogniser
/// uses to skip runs that cannot hold one of its matches (each search of a run is a call into
/// the regex engine).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Run {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) digits: usize,
    pub(crate) upper: usize,
    /// The most digits in a row with at most one space or `-` between neighbours
    /// (`[0-9](?:[ \-]?[0-9])*`): cards, US taxpayer and NHS numbers are such chains.
    pub(crate) chain: usize,
    /// Full stops (an IPv4 address has three).
    pub(crate) dots: usize,
    /// The most capitals in a row (a BIC starts with six).
    pub(crate) capitals: usize,
    /// A capital followed by a digit, with at most one space or tab between them: IBANs,
    /// National Insurance numbers, postcodes and ICD-10 codes all hold one.
    pub(crate) capital_digit: bool,
}

impl Run {
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Fills in the shapes of a numeric run from its bytes.
    fn numeric_shape(mut self, bytes: &[u8]) -> Run {
        let (mut chain, mut gap) = (0, false);
        for &b in &bytes[self.start..self.end] {
            if b.is_ascii_digit() {
                chain += 1;
                gap = false;
                self.chain = self.chain.max(chain);
            } else if matches!(b, b' ' | b'-') && chain > 0 && !gap {
                gap = true;
            } else {
                chain = 0;
                gap = false;
            }
            self.dots += usize::from(b == b'.');
        }
        self
    }

    /// Fills in the shapes of an upper run from its bytes.
    fn upper_shape(mut self, bytes: &[u8]) -> Run {
        let (mut capitals, mut capital_at) = (0, None);
        for (i, &b) in bytes[self.start..self.end].iter().enumerate() {
            if b.is_ascii_uppercase() {
                capitals += 1;
                self.capitals = self.capitals.max(capitals);
                capital_at = Some(i);
                continue;
            }
            capitals = 0;
            if b.is_ascii_digit() && capital_at.is_some_and(|c| i - c <= 2) {
                self.capital_digit = true;
            }
            // A space or tab right after the capital may stand between it and the digit.
            if !matches!(b, b' ' | b'\t') || capital_at.is_some_and(|c| c + 1 != i) {
                capital_at = None;
            }
        }
        self
    }
}

/// Runs of the bytes a capitalised name can hold (ASCII letters, `'`, `-`, `.`, space, and
/// any non-ASCII byte) that hold a lower-case letter, a space and a capital in a row (a
/// non-ASCII byte counts as either): every run of capitalised words, "Jane Smith" or
/// "Jane S.", lies in one.
pub(crate) fn name_runs(text: &str) -> Vec<Run> {
    let blocks = blocks_of(text.as_bytes(), NameBlock::of);
    let at = |b: usize| blocks.get(b).copied().unwrap_or_default();
    let seeds = |b: usize| {
        let (prev, this, next) = (b.checked_sub(1).map_or_else(NameBlock::default, at), at(b), at(b + 1));
        let lower_before = (this.lower << 1) | (prev.lower >> 63);
        let upper_after = (this.upper >> 1) | (next.upper << 63);
        this.space & lower_before & upper_after
    };
    let mut runs = Vec::new();
    seeded_runs(&blocks, seeds, |b| b.alphabet, |start, end| runs.push(Run { start, end, ..Run::default() }));
    runs
}

/// The first position at or after `pos` (at most the text's length) that is a character
/// boundary.
fn ceil_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos += 1;
    }
    pos
}

/// The position of the line break that ends the line holding `pos`, or the text's length.
fn line_end(text: &str, pos: usize) -> usize {
    text.as_bytes()[pos..].iter().position(|&b| b == b'\n').map_or(text.len(), |i| pos + i)
}

/// Bit masks of one block of 64 bytes for [`Runs`] (bit `j` is byte `j`).
#[derive(Debug, Default, Clone, Copy)]
struct Block {
    digit: u64,
    capital: u64,
    /// `[0-9 \t.\-()+]`
    numeric: u64,
    /// `[A-Z0-9 \t.]`
    upper: u64,
}

impl Block {
    fn of(bytes: &[u8; 64]) -> Block {
        // One flag byte per input byte (a loop the compiler vectorises), then packed to bits.
        let (mut digit, mut capital, mut numeric, mut upper) = ([0u8; 64], [0u8; 64], [0u8; 64], [0u8; 64]);
        for (j, &b) in bytes.iter().enumerate() {
            let d = u8::from(b.wrapping_sub(b'0') < 10);
            let c = u8::from(b.wrapping_sub(b'A') < 26);
            let space = u8::from(b == b' ') | u8::from(b == b'\t') | u8::from(b == b'.');
            let sign = u8::from(b == b'-') | u8::from(b == b'(') | u8::from(b == b')') | u8::from(b == b'+');
            digit[j] = d;
            capital[j] = c;
            numeric[j] = d | space | sign;
            upper[j] = d | c | space;
        }
        Block { digit: pack(&digit), capital: pack(&capital), numeric: pack(&numeric), upper: pack(&upper) }
    }
}

/// Packs 64 flag bytes (each 0 or 1) into a mask, bit `j` from byte `j`: eight bytes at a
/// time, a multiply gathering their low bits into the top byte (the eight partial products
/// land on distinct bits, so nothing carries).
pub(crate) fn pack(flags: &[u8; 64]) -> u64 {
    let mut m = 0u64;
    for (k, chunk) in flags.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        m |= (u64::from_le_bytes(word).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
    }
    m
}

/// Bit masks of one block of 64 bytes for [`name_runs`].
#[derive(Debug, Default, Clone, Copy)]
struct NameBlock {
    alphabet: u64,
    /// `[a-z]` or non-ASCII.
    lower: u64,
    /// `[A-Z]` or non-ASCII.
    upper: u64,
    space: u64,
}

impl NameBlock {
    fn of(bytes: &[u8; 64]) -> NameBlock {
        let (mut alphabet, mut lower, mut upper, mut space) = ([0u8; 64], [0u8; 64], [0u8; 64], [0u8; 64]);
        for (j, &b) in bytes.iter().enumerate() {
            let high = u8::from(b >= 0x80);
            let l = u8::from(b.wrapping_sub(b'a') < 26) | high;
            let u = u8::from(b.wrapping_sub(b'A') < 26) | high;
            let sp = u8::from(b == b' ');
            let mark = u8::from(b == b'\'') | u8::from(b == b'-') | u8::from(b == b'.');
            alphabet[j] = l | u | sp | mark;
            lower[j] = l;
            upper[j] = u;
            space[j] = sp;
        }
        NameBlock { alphabet: pack(&alphabet), lower: pack(&lower), upper: pack(&upper), space: pack(&space) }
    }
}

/// The masks of each 64-byte block of `bytes`, the last padded with zero bytes (which belong
/// to no alphabet).
fn blocks_of<B>(bytes: &[u8], of: impl Fn(&[u8; 64]) -> B) -> Vec<B> {
    let mut blocks = Vec::with_capacity(bytes.len() / 64 + 1);
    let mut chunks = bytes.chunks_exact(64);
    blocks.extend(chunks.by_ref().map(|c| of(c.try_into().unwrap_or(&[0; 64]))));
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 64];
        tail[..rest.len()].copy_from_slice(rest);
        blocks.push(of(&tail));
    }
    blocks
}

/// Calls `each(start, end)` for the run of `alphabet` around each seed, in order, once per
/// run.
fn seeded_runs<B>(
    blocks: &[B],
    seeds: impl Fn(usize) -> u64,
    alphabet: impl Fn(&B) -> u64,
    mut each: impl FnMut(usize, usize),
) {
    // The end of the last run: seeds before it lie in it.
    let mut done = 0;
    for b in 0..blocks.len() {
        let base = b * 64;
        let unseen = |done: usize| (!0u64).checked_shl(done.saturating_sub(base) as u32).unwrap_or(0);
        let mut m = seeds(b) & unseen(done);
        while m != 0 {
            let i = base + m.trailing_zeros() as usize;
            let end = run_end(blocks, &alphabet, i);
            each(run_start(blocks, &alphabet, i), end);
            done = end;
            m &= unseen(done);
        }
    }
}

/// The first byte of the run of `alphabet` that holds byte `i`.
fn run_start<B>(blocks: &[B], alphabet: impl Fn(&B) -> u64, i: usize) -> usize {
    let mut b = i / 64;
    // The block's bytes before `i` that are outside the alphabet.
    let mut outside = !alphabet(&blocks[b]) & ((1u64 << (i % 64)) - 1);
    loop {
        if outside != 0 {
            return b * 64 + 64 - outside.leading_zeros() as usize;
        }
        if b == 0 {
            return 0;
        }
        b -= 1;
        outside = !alphabet(&blocks[b]);
    }
}

/// The end (exclusive) of the run of `alphabet` that holds byte `i`.
fn run_end<B>(blocks: &[B], alphabet: impl Fn(&B) -> u64, i: usize) -> usize {
    let mut b = i / 64;
    let mut outside = !alphabet(&blocks[b]) & (!0u64 << (i % 64));
    loop {
        if outside != 0 {
            return b * 64 + outside.trailing_zeros() as usize;
        }
        b += 1;
        match blocks.get(b) {
            Some(block) => outside = !alphabet(block),
            None => return b * 64,
        }
    }
}

/// How many bits of `mask` are set in bytes `start..end`.
fn count(blocks: &[Block], mask: impl Fn(&Block) -> u64, start: usize, end: usize) -> usize {
    let mut n = 0;
    let mut at = start;
    while at < end {
        let (b, from) = (at / 64, at % 64);
        let to = (end - b * 64).min(64);
        let width = to - from;
        let bits = mask(&blocks[b]) >> from;
        n += if width == 64 { bits } else { bits & ((1u64 << width) - 1) }.count_ones() as usize;
        at = b * 64 + to;
    }
    n
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Makes every scoped search a plain `find_iter` over the whole text, so a test can
        /// check that scoping changes no finding.
        pub(crate) static UNSCOPED: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn unless_unscoped<'t>(
        re: &'t Regex,
        text: &'t str,
        scoped: impl Iterator<Item = Match<'t>> + 't,
    ) -> Box<dyn Iterator<Item = Match<'t>> + 't> {
        if UNSCOPED.get() {
            Box::new(re.find_iter(text))
        } else {
            Box::new(scoped)
        }
    }

    fn spans<'t>(t: &'t str, runs: &[Run]) -> Vec<&'t str> {
        runs.iter().map(|r| &t[r.start..r.end]).collect()
    }

    #[test]
    fn pack_sets_bit_j_from_byte_j() {
        let mut flags = [0u8; 64];
        for j in [0, 7, 8, 31, 62, 63] {
            flags[j] = 1;
        }
        assert_eq!(pack(&flags), (1 << 0) | (1 << 7) | (1 << 8) | (1 << 31) | (1 << 62) | (1 << 63));
        assert_eq!(pack(&[1; 64]), u64::MAX);
        assert_eq!(pack(&[0; 64]), 0);
    }

    #[test]
    fn runs_and_shapes() {
        let t = "call +44 (20) 7946-0958 or GB82 WEST 1234, card 4111 1111 1111 1111, ip 10.0.0.1";
        let r = Runs::new(t);
        assert_eq!(spans(t, &r.numeric), [" +44 (20) 7946-0958 ", " 4111 1111 1111 1111", " 10.0.0.1"]);
        assert_eq!((r.numeric[0].digits, r.numeric[0].chain), (12, 8));
        assert_eq!((r.numeric[1].chain, r.numeric[2].dots), (16, 3));
        assert_eq!(spans(t, &r.upper), [" GB82 WEST 1234"]);
        assert_eq!((r.upper[0].digits, r.upper[0].upper, r.upper[0].capitals), (6, 6, 4));
        assert!(r.upper[0].capital_digit);
        // A run that crosses a block boundary is one run.
        let t = format!("{}0123 4567 89", "x".repeat(60));
        assert_eq!(spans(&t, &Runs::new(&t).numeric), ["0123 4567 89"]);
    }

    #[test]
    fn name_runs_hold_capitalised_words() {
        let t = "Customer: Halina Nowak (halina@example.com), seen by Dr Zoë O'Brien. the end";
        assert_eq!(spans(t, &name_runs(t)), [" Halina Nowak ", " seen by Dr Zoë O'Brien. the end"]);
    }

    #[test]
    fn same_matches_as_find_iter() {
        let re = crate::recognizers::compile("test", r"\b[0-9]{3}[ \-]?[0-9]{3}[ \-]?[0-9]{4}\b").unwrap();
        for t in ["943 476 5919", "x943 476 5919", "943 476 59190", "é943 476 5919é 123-456-7890", "1234567890 12345"]
        {
            let runs = Runs::new(t);
            let ours: Vec<_> = find_in_runs(&re, t, &runs.numeric, 10, |_| true).map(|m| m.range()).collect();
            let theirs: Vec<_> = re.find_iter(t).map(|m| m.range()).collect();
            assert_eq!(ours, theirs, "{t:?}");
        }
        let re = crate::recognizers::compile("test", r"\bpass[a-z]*\b").unwrap();
        let cue = crate::recognizers::compile("test", "pass").unwrap();
        let t = "no\npassword passes\n\nbypass pass\n";
        let ours: Vec<_> = find_in_cued_lines(&re, &cue, t).map(|m| m.as_str()).collect();
        assert_eq!(ours, ["password", "passes", "pass"]);
        assert_eq!(positions_of(&"a:b=".repeat(40), b':', b'=').take(3).collect::<Vec<_>>(), [1, 3, 5]);
    }
}
