//! A sans-IO decoder for server-sent events (the WHATWG `text/event-stream` format): bytes in,
//! the `data` of each complete event out, however the bytes were split into network reads.
//!
//! Lines end in `\n`, `\r\n` or `\r`; a blank line ends an event; lines starting with `:` are
//! comments (keep-alives); several `data:` lines in one event are joined with `\n`; other fields
//! (`event`, `id`, `retry`) are ignored because the OpenAI stream does not use them. Data stays
//! as bytes, so a UTF-8 character split across reads is reassembled before anyone decodes it.

/// An event or line grew past the decoder's limit (a broken or hostile server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Oversized;

pub(crate) struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    after_cr: bool,
    max_bytes: usize,
}

impl SseDecoder {
    /// `max_bytes` bounds one line and one event's data.
    pub fn new(max_bytes: usize) -> Self {
        Self { line: Vec::new(), data: Vec::new(), has_data: false, after_cr: false, max_bytes }
    }

    /// Feeds the next bytes of the stream and appends the data of every event they complete.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<Vec<u8>>) -> Result<(), Oversized> {
        let mut rest = bytes;
        while let Some(&first) = rest.first() {
            // A `\r\n` split across two reads: the `\r` already ended the line.
            if self.after_cr {
                self.after_cr = false;
                if first == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.push_line_bytes(&rest[..end])?;
                    self.after_cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    self.end_line(events)?;
                }
                None => {
                    self.push_line_bytes(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// Ends the stream. An event without its closing blank line is incomplete and is dropped,
    /// as the format requires; returns whether there was one.
    pub fn finish(&mut self) -> bool {
        let pending = self.has_data || !self.line.is_empty();
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        pending
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), Oversized> {
        if self.line.len() + bytes.len() > self.max_bytes {
            return Err(Oversized);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, events: &mut Vec<Vec<u8>>) -> Result<(), Oversized> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                events.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
        } else if line[0] != b':' {
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &[][..]),
            };
            if field == b"data" {
                if self.data.len() + value.len() + 1 > self.max_bytes {
                    return Err(Oversized);
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
        // Reuse the line's allocation.
        self.line = line;
        self.line.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(chunks: &[&[u8]]) -> Vec<String> {
        let mut decoder = SseDecoder::new(1 << 16);
        let mut events = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut events).unwrap();
        }
        events.into_iter().map(|e| String::from_utf8(e).unwrap()).collect()
    }

    #[test]
    fn decodes_events_with_every_line_ending() {
        assert_eq!(decode(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata:d\n\n"]), ["a", "b", "c", "d"]);
    }

    #[test]
    fn comments_and_other_fields_are_skipped() {
        assert_eq!(decode(&[b": keep-alive\n\nevent: x\nid: 1\nretry: 5\ndata: a\n\n: bye\n\n"]), ["a"]);
    }

    #[test]
    fn several_data_lines_join_with_newlines() {
        assert_eq!(decode(&[b"data: {\"a\":\ndata: 1}\n\n"]), ["{\"a\":\n1}"]);
    }

    #[test]
    fn only_one_leading_space_is_removed() {
        assert_eq!(decode(&[b"data:  two\n\n"]), [" two"]);
    }

    #[test]
    fn crlf_split_across_reads_is_one_line_end() {
        assert_eq!(decode(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n", b"\r\n"]), ["a", "b"]);
    }

    #[test]
    fn a_character_split_across_reads_is_reassembled() {
        let bytes = "data: é\n\n".as_bytes();
        assert_eq!(decode(&[&bytes[..7], &bytes[7..]]), ["é"]);
    }

    #[test]
    fn an_unterminated_event_is_dropped_and_reported() {
        let mut decoder = SseDecoder::new(1024);
        let mut events = Vec::new();
        decoder.feed(b"data: a\n\ndata: {\"trunc", &mut events).unwrap();
        assert_eq!(events.len(), 1);
        assert!(decoder.finish());
        decoder.feed(b"data: b\n\n", &mut events).unwrap();
        assert!(!decoder.finish());
    }

    #[test]
    fn oversized_lines_and_events_are_refused() {
        let mut events = Vec::new();
        assert_eq!(SseDecoder::new(8).feed(b"data: 0123456789", &mut events), Err(Oversized));
        let mut decoder = SseDecoder::new(10);
        assert_eq!(decoder.feed(b"data:0123\ndata:4567\n", &mut events), Ok(()));
        assert_eq!(decoder.feed(b"data:89\n", &mut events), Err(Oversized));
    }

    proptest! {
        /// However the stream is cut into reads, the same events come out.
        #[test]
        fn splitting_does_not_change_the_events(
            events in proptest::collection::vec("[a-z{}\":, é]{0,12}", 0..6),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut stream = String::new();
            for event in &events {
                stream.push_str(&format!(": ping{end}data: {event}{end}{end}"));
            }
            let bytes = stream.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points {
                chunks.push(&bytes[start..point]);
                start = point;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(decode(&chunks), events);
        }
    }
}
