//! Contact and network identifiers: EMAIL (plain and obfuscated), IP_ADDRESS (v4 and v6) and
//! MAC_ADDRESS.

use core::net::Ipv6Addr;
use std::str::FromStr;

use perimeter_types::EntityKind;
use regex::Regex;

use super::{byte_at, byte_before, compile, continues_token, finding};
use crate::context::{before, find_word, WINDOW};
use crate::scope::find_in_runs;
use crate::{DetectError, Finding, NormalizedText, Recognizer};

pub(super) fn add(all: &mut Vec<Box<dyn Recognizer>>) -> Result<(), DetectError> {
    all.push(Box::new(Email::new()?));
    all.push(Box::new(ObfuscatedEmail::new()?));
    all.push(Box::new(EncodedEmail {
        re: compile(
            "email-url-encoded",
            r"[A-Za-z0-9._+\-]+%40[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b",
        )?,
    }));
    all.push(Box::new(Ipv4::new()?));
    all.push(Box::new(Ipv6::new()?));
    all.push(Box::new(Mac::new()?));
    Ok(())
}

struct Email {
    re: Regex,
}

impl Email {
    fn new() -> Result<Self, DetectError> {
        let label = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?";
        // The local part may hold any letter ("müller@…"); no leading `\b`, which would start
        // "müller" at "ller". The leftmost match starts where the run of local-part characters does.
        let pattern = format!(r"(?u:[\p{{L}}\p{{N}}._%+\-])+@{label}(?:\.{label})*\.[A-Za-z]{{2,24}}\b");
        Ok(Email { re: compile("email", &pattern)? })
    }
}

impl Recognizer for Email {
    fn name(&self) -> &'static str {
        "email"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Email]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"(?u:[\p{L}\p{N}._%+\-])@[A-Za-z0-9]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            let local_len = m.as_str().find('@').unwrap_or(0);
            let lead = m.as_str()[..local_len].len()
                - m.as_str()[..local_len].trim_start_matches(['.', '-', '+', '%', '_']).len();
            let start = m.start() + lead;
            if local_len - lead == 0 || local_len - lead > 64 {
                continue;
            }
            // `scheme://user:pass@host` and `scheme://token@host` (a Sentry DSN, a token in a
            // clone URL) are URLs with credentials, not addresses.
            if (byte_before(t, start) == Some(b':') && before(t, start, 80).contains("://"))
                || t[..start].ends_with("://")
            {
                continue;
            }
            // `git@github.com:org/repo` is an SSH remote.
            if byte_at(t, m.end()) == Some(b':') && byte_at(t, m.end() + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                continue;
            }
            // `logo@2x.png` is an image name.
            let domain = &m.as_str()[m.as_str().find('@').map_or(0, |i| i + 1)..];
            if is_retina_image(domain) {
                continue;
            }
            out.push(finding(EntityKind::Email, start, m.end(), 0.95, &["email-format"]));
        }
    }
}

fn is_retina_image(domain: &str) -> bool {
    let Some((scale, ext)) = domain.split_once('.') else { return false };
    scale.ends_with('x')
        && scale[..scale.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && matches!(ext.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg" | "gif" | "svg" | "webp")
}

/// An address URL-encoded in a query string or log line: `jane.doe%40example.com`.
struct EncodedEmail {
    re: Regex,
}

impl Recognizer for EncodedEmail {
    fn name(&self) -> &'static str {
        "email-url-encoded"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Email]
    }
    fn triggers(&self) -> &[&'static str] {
        &["%40[A-Za-z0-9]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            let local = &m.as_str()[..m.as_str().find("%40").unwrap_or(0)];
            // The local part starts at a letter or digit ("=.jo%40…" starts at "jo").
            let lead = local.len() - local.trim_start_matches(['.', '-', '+', '_']).len();
            if local.len() - lead == 0 || local.len() - lead > 64 {
                continue;
            }
            out.push(finding(EntityKind::Email, m.start() + lead, m.end(), 0.9, &["email-format", "url-encoded"]));
        }
    }
}

/// `jane dot doe at example dot com`, `jane(at)example(dot)com`, `jane [at] example [dot] com`.
struct ObfuscatedEmail {
    re: Regex,
}

/// Top-level domains accepted after a spelled-out ` at `, where prose ("meet at noon dot …") would
/// otherwise match.
const COMMON_TLDS: &[&str] = &[
    "com", "org", "net", "edu", "gov", "mil", "int", "io", "co", "uk", "us", "de", "fr", "es", "it", "nl", "be", "ch",
    "at", "se", "no", "dk", "fi", "ie", "pl", "pt", "ru", "cn", "jp", "in", "au", "ca", "nz", "br", "mx", "za", "eu",
    "info", "biz", "me", "tv", "ai", "dev", "app",
];

impl ObfuscatedEmail {
    fn new() -> Result<Self, DetectError> {
        let word = r"[A-Za-z0-9_%+\-]+";
        let bracket_at = r"[ \t]*[\(\[\{<][ \t]*(?i:at)[ \t]*[\)\]\}>][ \t]*";
        let spaced_at = r"[ \t]+(?i:at)[ \t]+";
        let dot = r"(?:[ \t]*[\(\[\{<][ \t]*(?i:dot)[ \t]*[\)\]\}>][ \t]*|[ \t]+(?i:dot)[ \t]+|\.)";
        let pattern = format!(
            r"\b{word}(?:{dot}{word})*(?:{bracket_at}|{spaced_at}|[ \t]*@[ \t]*){word}(?:{dot}{word})*{dot}[A-Za-z]{{2,24}}\b"
        );
        Ok(ObfuscatedEmail { re: compile("email-obfuscated", &pattern)? })
    }
}

impl Recognizer for ObfuscatedEmail {
    fn name(&self) -> &'static str {
        "email-obfuscated"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Email]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"(?i)[\(\[\{<][ \t]*(?:at|dot)[ \t]*[\)\]\}>]", r"(?i)[ \t]dot[ \t]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            let s = m.as_str();
            let lower = s.to_ascii_lowercase();
            let compact: String = lower.chars().filter(|c| !matches!(c, ' ' | '\t')).collect();
            let bracketed = |w: &str| {
                ["()", "[]", "{}", "<>"].iter().any(|p| compact.contains(&format!("{}{w}{}", &p[..1], &p[1..])))
            };
            if !bracketed("at") && !bracketed("dot") && !lower.contains(" dot ") {
                // Nothing obfuscated: the plain recogniser's business.
                continue;
            }
            let at_spaced = !bracketed("at") && !s.contains('@');
            if at_spaced {
                // Spelled-out " at ": demand spelled-out dots in the domain and a common TLD.
                let Some(at) = lower.find(" at ") else { continue };
                let domain = &lower[at + 4..];
                let tld = domain.rsplit([' ', '.', ')', ']', '}', '>']).next().unwrap_or("");
                if !domain.contains("dot") || domain.contains('.') || !COMMON_TLDS.contains(&tld) {
                    continue;
                }
            }
            // "jane dot doe@example.com" must beat the plain match "doe@example.com" inside it.
            let score = if s.contains('@') { 0.95 } else { 0.85 };
            out.push(finding(EntityKind::Email, m.start(), m.end(), score, &["obfuscated"]));
        }
    }
}

struct Ipv4 {
    re: Regex,
}

impl Ipv4 {
    fn new() -> Result<Self, DetectError> {
        Ok(Ipv4 { re: compile("ipv4", r"\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b")? })
    }
}

/// Words that make a dotted quad a version number.
const VERSION_WORDS: &[&str] = &["version", "ver", "v", "release", "build", "firmware", "fw", "rev", "revision"];

/// Words that put a dotted quad in a software release.
const RELEASE_WORDS: &[&str] =
    &["version", "release", "released", "upgrade", "upgraded", "update", "updated", "patch", "patched", "firmware"];

impl Recognizer for Ipv4 {
    fn name(&self) -> &'static str {
        "ipv4"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::IpAddress]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in find_in_runs(&self.re, t, &text.runs().numeric, 7, |r| r.dots >= 3) {
            let mut octets = [0u32; 4];
            let mut ok = true;
            for (i, part) in m.as_str().split('.').enumerate() {
                let leading_zero = part.len() > 1 && part.starts_with('0');
                match (part.parse::<u32>(), octets.get_mut(i)) {
                    (Ok(v), Some(o)) if v <= 255 && !leading_zero => *o = v,
                    _ => ok = false,
                }
            }
            if !ok || continues_token(t, m.start(), m.end()) {
                continue;
            }
            // Unspecified, broadcast and loopback addresses identify nobody.
            if octets == [0, 0, 0, 0] || octets == [255, 255, 255, 255] || octets[0] == 127 {
                continue;
            }
            // A network in CIDR notation ("10.20.0.0/16": no host bits set) is a range of
            // addresses, not one host.
            if is_network(octets, &t[m.end()..]) {
                continue;
            }
            // "v1.2.3.4", "version 1.2.3.4", "agent upgraded to 1.2.3.4".
            let prev = before(t, m.start(), 16);
            if prev.ends_with(['v', 'V'])
                || last_word_is(prev, VERSION_WORDS)
                || find_word(before(t, m.start(), WINDOW), RELEASE_WORDS).is_some()
            {
                continue;
            }
            out.push(finding(EntityKind::IpAddress, m.start(), m.end(), 0.85, &["ipv4"]));
        }
    }
}

/// `rest` (the text after an IPv4 address) starts with a prefix length `/N` (N < 32, not
/// followed by another digit) under which every host bit of `octets` is zero.
fn is_network(octets: [u32; 4], rest: &str) -> bool {
    let Some(len) = rest.strip_prefix('/') else { return false };
    let digits = len.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=2).contains(&digits) {
        return false;
    }
    let Ok(prefix) = len[..digits].parse::<u32>() else { return false };
    let addr = octets.iter().fold(0u32, |a, &o| (a << 8) | o);
    prefix < 32 && addr & (u32::MAX >> prefix) == 0
}

/// The last word of `prev` (ignoring trailing spaces and `:`/`=`/`#`) is one of `words`.
fn last_word_is(prev: &str, words: &[&'static str]) -> bool {
    let trimmed = prev.trim_end_matches([' ', '\t', ':', '=', '#']);
    let word = trimmed.rsplit(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("");
    find_word(word, words).is_some_and(|w| w.len() == word.len())
}

struct Ipv6 {
    re: Regex,
}

impl Ipv6 {
    fn new() -> Result<Self, DetectError> {
        Ok(Ipv6 { re: compile("ipv6", r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}")? })
    }
}

impl Recognizer for Ipv6 {
    fn name(&self) -> &'static str {
        "ipv6"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::IpAddress]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:", r"::[0-9A-Fa-f]"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':'));
            if word(byte_before(t, m.start())) || byte_before(t, m.start()) == Some(b'.') || word(byte_at(t, m.end())) {
                continue;
            }
            let s = m.as_str();
            let Ok(addr) = Ipv6Addr::from_str(s) else { continue };
            let hex_digits = s.bytes().filter(u8::is_ascii_hexdigit).count();
            if addr.is_loopback() || addr.is_unspecified() || hex_digits < 4 {
                continue;
            }
            // `Add::add`, `dead::beef`: code paths made of hex letters. An address has digits.
            let groups: Vec<&str> = s.split(':').filter(|g| !g.is_empty()).collect();
            let with_digits = groups.iter().filter(|g| g.bytes().any(|b| b.is_ascii_digit())).count();
            let mapped_v4 = s.contains('.');
            if with_digits == 0 || (groups.len() < 3 && with_digits < 2 && !s.ends_with("::") && !mapped_v4) {
                continue;
            }
            out.push(finding(EntityKind::IpAddress, m.start(), m.end(), 0.85, &["ipv6"]));
        }
    }
}

struct Mac {
    re: Regex,
}

impl Mac {
    fn new() -> Result<Self, DetectError> {
        Ok(Mac {
            re: compile(
                "mac",
                r"(?i)\b(?:[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})\b",
            )?,
        })
    }
}

impl Recognizer for Mac {
    fn name(&self) -> &'static str {
        "mac"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::MacAddress]
    }
    fn triggers(&self) -> &[&'static str] {
        &[r"(?i)[0-9a-f]{2}[:\-][0-9a-f]{2}[:\-][0-9a-f]{2}[:\-]", r"(?i)[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}"]
    }
    fn find(&self, text: &NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        for m in self.re.find_iter(t) {
            // Part of a longer colon/hyphen run (an IPv6 address, a fingerprint).
            let glued = |b: Option<u8>| matches!(b, Some(b':' | b'-' | b'.'));
            let hex = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit());
            if (glued(byte_at(t, m.end())) && hex(byte_at(t, m.end() + 1)))
                || (glued(byte_before(t, m.start())) && hex(m.start().checked_sub(2).and_then(|i| byte_at(t, i))))
            {
                continue;
            }
            let hexes: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_hexdigit).collect();
            if hexes.iter().all(|&b| b == b'0') || hexes.iter().all(|&b| b == b'f' || b == b'F') {
                continue;
            }
            out.push(finding(EntityKind::MacAddress, m.start(), m.end(), 0.85, &["mac-format"]));
        }
    }
}
