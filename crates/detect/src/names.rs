//! Given-name and surname lists for PERSON detection (see `data/README.md` for their source),
//! compiled into the binary and loaded into hash sets once per [`crate::Detector`].

use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use unicode_normalization::char::decompose_canonical;

const GIVEN: &str = include_str!("../data/given_names.txt");
const EXTRA_GIVEN: &str = include_str!("../data/extra_given_names.txt");
const SURNAMES: &str = include_str!("../data/surnames.txt");
const EXTRA_SURNAMES: &str = include_str!("../data/extra_surnames.txt");

/// Given names that are also everyday capitalised words; at the start of a sentence they are
/// more likely the word ("May I…", "Will Power is…").
#[rustfmt::skip]
const AMBIGUOUS_GIVEN: &[&str] = &[
    "will", "may", "june", "april", "august", "mark", "bill", "rose", "grant", "faith", "hope", "joy", "art", "guy",
    "pat", "rich", "chase", "drew", "frank", "jack", "ray", "summer", "page", "price", "hunter", "king", "young",
    "long", "major", "max", "dawn", "angel", "christian", "sunny", "autumn", "ivy", "holly", "lane", "dean", "don",
    "man", "many", "soon", "star", "sun", "moon", "carry", "miss", "so", "in", "an", "see", "else", "love", "golden",
    "honey", "cherry", "delta", "echo", "ruby", "crystal", "pearl", "amber", "penny", "chance", "cash", "clay",
    "cliff", "dale", "duke", "earl", "forest", "glen", "grace", "heath", "iris", "jewel", "lily", "mercy", "olive",
    "reed", "rod", "sandy", "sky", "stone", "storm", "violet", "wade", "ward", "early", "ok", "alpha", "major",
    "general", "said", "dear", "hi", "best", "new",
];

/// Entries of the Census given-name list that are English function words ("In Rust", "So Long").
const NOT_GIVEN: &[&str] =
    &["in", "an", "so", "see", "ok", "else", "my", "many", "soon", "man", "do", "be", "the", "to"];

/// Surnames that are also the last word of places and organisations ("King Street",
/// "Grace Church").
#[rustfmt::skip]
const PLACE_WORDS: &[&str] = &[
    "street", "road", "lane", "hill", "park", "hall", "church", "house", "court", "green", "wood", "field", "square",
    "way", "place", "bridge", "river", "lake", "bay", "college", "school", "hospital", "center", "centre", "bank",
    "avenue", "drive", "close", "gardens", "grove", "row", "walk", "island", "beach", "valley", "mountain", "port",
    "station", "tower", "castle", "abbey", "chapel", "mill", "farm", "gate", "cross", "end", "town", "city", "county",
    "state", "north", "south", "east", "west", "library", "museum", "press", "group", "company", "foundation",
    "trust", "day", "christmas", "summer", "winter", "spring", "fall", "may", "june", "july", "inc", "ltd", "llc",
    "corp", "corporation", "plc", "hotel", "airport", "award", "prize", "institute", "clinic", "pharmacy", "surgery",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february", "march",
    "april", "august", "september", "october", "november", "december", "studio", "studios", "services", "solutions",
    "consulting", "partners", "associates", "holdings", "limited", "gmbh", "agency", "bakery", "cafe", "restaurant",
    "shop", "store", "stores", "supplies", "systems", "technologies", "labs", "media", "foods", "logistics",
];

/// Bits of a word's entry in [`Names`].
const GIVEN_BIT: u8 = 1;
const SURNAME_BIT: u8 = 2;
const NOT_GIVEN_BIT: u8 = 4;
const PLACE_BIT: u8 = 8;
const AMBIGUOUS_BIT: u8 = 16;

/// Loaded name lists: one hash lookup per word answers every question below.
pub(crate) struct Names {
    words: &'static FxHashMap<&'static str, u8>,
}

/// The word lists as one table, built on first use (the hand lists are also needed by the
/// associated functions, which have no [`Names`]).
fn table() -> &'static FxHashMap<&'static str, u8> {
    static TABLE: OnceLock<FxHashMap<&'static str, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let lines = |s: &'static str| s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let mut words: FxHashMap<&'static str, u8> = FxHashMap::default();
        let mut mark = |list: &mut dyn Iterator<Item = &'static str>, bit: u8| {
            for w in list {
                *words.entry(w).or_default() |= bit;
            }
        };
        mark(&mut lines(GIVEN).chain(lines(EXTRA_GIVEN)), GIVEN_BIT);
        mark(&mut lines(SURNAMES).chain(lines(EXTRA_SURNAMES)), SURNAME_BIT);
        mark(&mut NOT_GIVEN.iter().copied(), NOT_GIVEN_BIT);
        mark(&mut PLACE_WORDS.iter().copied(), PLACE_BIT);
        mark(&mut AMBIGUOUS_GIVEN.iter().copied(), AMBIGUOUS_BIT);
        words
    })
}

impl Names {
    pub(crate) fn load() -> Self {
        Names { words: table() }
    }

    fn bits(words: &FxHashMap<&'static str, u8>, key: &str) -> u8 {
        words.get(key).copied().unwrap_or(0)
    }

    /// `word` (any case, apostrophes ignored) is a known given name.
    pub(crate) fn is_given(&self, word: &str) -> bool {
        // A hyphenated given name ("Hans-Peter", "Anne-Sophie") when every part is one.
        if word.contains('-') {
            return word.split('-').all(|part| self.is_given(part));
        }
        with_key(word, |k| Self::bits(self.words, k) & (GIVEN_BIT | NOT_GIVEN_BIT) == GIVEN_BIT)
    }

    /// `word` is a known surname (the last part of a hyphenated name counts).
    pub(crate) fn is_surname(&self, word: &str) -> bool {
        let last = word.rsplit('-').next().unwrap_or(word);
        with_key(last, |k| Self::bits(self.words, k) & (SURNAME_BIT | PLACE_BIT) == SURNAME_BIT)
    }

    /// A word that ends names of places and organisations ("Street", "Hospital", "Ltd").
    pub(crate) fn is_place_word(word: &str) -> bool {
        with_key(word, |k| Self::bits(table(), k) & PLACE_BIT != 0)
    }

    /// A given name that is also an everyday word.
    pub(crate) fn is_ambiguous_given(word: &str) -> bool {
        with_key(word, |k| Self::bits(table(), k) & AMBIGUOUS_BIT != 0)
    }
}

/// Calls `f` with `word` lowercased, without apostrophes and with accents folded ("Jürgen" →
/// "jurgen", "Łukasz" → "lukasz"), on the stack; false for words that are not letters or are
/// too long to be names.
fn with_key(word: &str, f: impl FnOnce(&str) -> bool) -> bool {
    let mut buf = [0u8; 32];
    let mut n = 0;
    let mut push = |b: u8| -> bool {
        let Some(slot) = buf.get_mut(n) else { return false };
        *slot = b.to_ascii_lowercase();
        n += 1;
        true
    };
    for c in word.chars() {
        let ok = match c {
            '\'' | '’' => true,
            'A'..='Z' | 'a'..='z' => push(c as u8),
            'ł' | 'Ł' => push(b'l'),
            'ø' | 'Ø' => push(b'o'),
            'đ' | 'Đ' => push(b'd'),
            'ı' => push(b'i'),
            'ß' => push(b's') && push(b's'),
            'æ' | 'Æ' => push(b'a') && push(b'e'),
            'œ' | 'Œ' => push(b'o') && push(b'e'),
            _ => {
                // A letter with a diacritic decomposes to an ASCII letter and marks.
                let mut base = None;
                decompose_canonical(c, |d| {
                    if base.is_none() && d.is_ascii_alphabetic() {
                        base = Some(d as u8);
                    }
                });
                base.is_some_and(&mut push)
            }
        };
        if !ok {
            return false;
        }
    }
    std::str::from_utf8(&buf[..n]).is_ok_and(|k| !k.is_empty() && f(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_load_and_look_up() {
        let n = Names::load();
        let count = |bit: u8| n.words.values().filter(|&&b| b & bit != 0).count();
        assert!(count(GIVEN_BIT) > 5000 && count(SURNAME_BIT) > 30000);
        assert!(n.is_given("John") && n.is_given("SIOBHAN") && n.is_given("niamh"));
        assert!(n.is_surname("Smith") && n.is_surname("O'Brien") && n.is_surname("Smith-Jones"));
        assert!(!n.is_surname("Street") && !n.is_given("The") && !n.is_given("東京"));
        assert!(n.is_given("Zoë") && n.is_given("Jürgen") && n.is_given("Lucía") && n.is_surname("Fernández"));
        assert!(Names::is_ambiguous_given("Will"));
        assert!(n.is_given("Jean-Paul") && n.is_given("Mary-Kate") && !n.is_given("Karl-Street"));
    }
}
