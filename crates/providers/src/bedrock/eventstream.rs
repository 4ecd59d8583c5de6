//! The `application/vnd.amazon.eventstream` framing that Bedrock's streaming APIs answer with:
//! an incremental decoder for untrusted bytes, and the encoder the tests build frames with.
//!
//! A message is a 12-byte prelude (total length, headers length, both u32 big-endian, and the
//! CRC32 of those 8 bytes), the headers, the payload and a CRC32 of everything before it. Both
//! checksums are verified; a frame that fails either is an error, never skipped, because the
//! stream cannot be resynchronised after it. This module is pure: bytes in, messages out.

use std::fmt;

/// The largest message accepted (AWS's own limit for a payload is 16 MiB). Checked as soon as a
/// prelude arrives, so a hostile length never makes the decoder buffer more than this.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Prelude (12 bytes) plus the message CRC (4 bytes): the smallest possible message.
const MIN_FRAME_BYTES: usize = 16;
const PRELUDE_BYTES: usize = 12;

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<Header>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of the first string header called `name`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name == name).and_then(|h| match &h.value {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

impl Header {
    /// A string header, the only kind Bedrock sends.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: HeaderValue::String(value.into()) }
    }
}

/// A header value with its wire type (the type byte in comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// 0 (true) and 1 (false): no value bytes.
    Bool(bool),
    /// 2
    Byte(i8),
    /// 3
    Short(i16),
    /// 4
    Int(i32),
    /// 5
    Long(i64),
    /// 6: u16 length, then the bytes.
    Bytes(Vec<u8>),
    /// 7: u16 length, then UTF-8.
    String(String),
    /// 8: milliseconds since the Unix epoch, i64.
    Timestamp(i64),
    /// 9: 16 bytes.
    Uuid([u8; 16]),
}

/// Why the byte stream is not a valid sequence of messages. Never contains payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The prelude's checksum does not match its first 8 bytes.
    PreludeCrc,
    /// The message's checksum does not match its bytes.
    MessageCrc,
    /// The prelude announces a message longer than the decoder's limit.
    TooLarge { length: usize, limit: usize },
    /// The prelude announces a length that cannot hold a prelude, its headers and a checksum.
    BadLength,
    /// A header could not be read: the reason.
    BadHeader(&'static str),
    /// The stream ended inside a message, with this many bytes of it received.
    Truncated(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::PreludeCrc => f.write_str("an event-stream prelude failed its CRC32 check"),
            DecodeError::MessageCrc => f.write_str("an event-stream message failed its CRC32 check"),
            DecodeError::TooLarge { length, limit } => {
                write!(f, "an event-stream message of {length} bytes is over the limit of {limit}")
            }
            DecodeError::BadLength => f.write_str("an event-stream prelude has inconsistent lengths"),
            DecodeError::BadHeader(why) => write!(f, "an event-stream header is malformed: {why}"),
            DecodeError::Truncated(n) => {
                write!(f, "the event stream ended inside a message ({n} bytes of it received)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Turns a byte stream, in pieces cut anywhere, into messages.
///
/// After an error the decoder stays failed: every later `push` returns the same error, because a
/// byte stream with one bad frame has no reliable next frame boundary.
#[derive(Debug)]
pub struct Decoder {
    buffer: Vec<u8>,
    max_frame: usize,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the `MAX_FRAME_BYTES` limit.
    pub fn new() -> Self {
        Self::with_max_frame(MAX_FRAME_BYTES)
    }

    pub fn with_max_frame(max_frame: usize) -> Self {
        Self { buffer: Vec::new(), max_frame, failed: None }
    }

    /// Adds `bytes` and returns every message they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        let mut start = 0;
        let result = loop {
            match self.next_frame(start) {
                Ok(Some((message, length))) => {
                    messages.push(message);
                    start += length;
                }
                Ok(None) => break Ok(messages),
                Err(error) => break Err(error),
            }
        };
        self.buffer.drain(..start);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.buffer = Vec::new();
        }
        result
    }

    /// Says whether the stream ended cleanly, between messages.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match (&self.failed, self.buffer.len()) {
            (Some(error), _) => Err(error.clone()),
            (None, 0) => Ok(()),
            (None, n) => Err(DecodeError::Truncated(n)),
        }
    }

    /// The message starting at `start` in the buffer and its length, or `None` if its bytes have
    /// not all arrived yet.
    fn next_frame(&self, start: usize) -> Result<Option<(Message, usize)>, DecodeError> {
        let bytes = &self.buffer[start..];
        let Some(prelude) = bytes.get(..PRELUDE_BYTES) else { return Ok(None) };
        // The prelude is checked before waiting for the rest, so that a corrupt or hostile length
        // is refused at once rather than buffered up to.
        if crc32fast::hash(&prelude[..8]) != be_u32(&prelude[8..12]) {
            return Err(DecodeError::PreludeCrc);
        }
        let total = be_u32(&prelude[0..4]) as usize;
        let headers_length = be_u32(&prelude[4..8]) as usize;
        if total > self.max_frame {
            return Err(DecodeError::TooLarge { length: total, limit: self.max_frame });
        }
        if total < MIN_FRAME_BYTES || headers_length > total - MIN_FRAME_BYTES {
            return Err(DecodeError::BadLength);
        }
        let Some(frame) = bytes.get(..total) else { return Ok(None) };
        let (body, crc) = frame.split_at(total - 4);
        if crc32fast::hash(body) != be_u32(crc) {
            return Err(DecodeError::MessageCrc);
        }
        let headers_end = PRELUDE_BYTES + headers_length;
        let headers = parse_headers(&body[PRELUDE_BYTES..headers_end])?;
        let payload = body[headers_end..].to_vec();
        Ok(Some((Message { headers, payload }, total)))
    }
}

/// Encodes one message. Panics on nothing; a header name over 255 bytes or a string or byte
/// value over 65,535 bytes is cut to fit, which only tests can ask for.
pub fn encode(headers: &[Header], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for header in headers {
        let name = &header.name.as_bytes()[..header.name.len().min(u8::MAX as usize)];
        head.push(name.len() as u8);
        head.extend_from_slice(name);
        let short_bytes = |out: &mut Vec<u8>, kind: u8, value: &[u8]| {
            let value = &value[..value.len().min(u16::MAX as usize)];
            out.push(kind);
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value);
        };
        match &header.value {
            HeaderValue::Bool(true) => head.push(0),
            HeaderValue::Bool(false) => head.push(1),
            HeaderValue::Byte(v) => {
                head.push(2);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                head.push(3);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int(v) => {
                head.push(4);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                head.push(5);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => short_bytes(&mut head, 6, v),
            HeaderValue::String(v) => short_bytes(&mut head, 7, v.as_bytes()),
            HeaderValue::Timestamp(v) => {
                head.push(8);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                head.push(9);
                head.extend_from_slice(v);
            }
        }
    }
    let total = PRELUDE_BYTES + head.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

/// Reads the header block of one message; `bytes` is exactly that block.
fn parse_headers(mut bytes: &[u8]) -> Result<Vec<Header>, DecodeError> {
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let name_length = usize::from(take(&mut bytes, 1)?[0]);
        if name_length == 0 {
            return Err(DecodeError::BadHeader("a header has an empty name"));
        }
        let name = std::str::from_utf8(take(&mut bytes, name_length)?)
            .map_err(|_| DecodeError::BadHeader("a header name is not UTF-8"))?
            .to_string();
        let value = match take(&mut bytes, 1)?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(fixed(&mut bytes)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(fixed(&mut bytes)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(fixed(&mut bytes)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(fixed(&mut bytes)?)),
            6 => HeaderValue::Bytes(short_prefixed(&mut bytes)?.to_vec()),
            7 => HeaderValue::String(
                std::str::from_utf8(short_prefixed(&mut bytes)?)
                    .map_err(|_| DecodeError::BadHeader("a string header value is not UTF-8"))?
                    .to_string(),
            ),
            8 => HeaderValue::Timestamp(i64::from_be_bytes(fixed(&mut bytes)?)),
            9 => HeaderValue::Uuid(fixed(&mut bytes)?),
            _ => return Err(DecodeError::BadHeader("a header has an unknown value type")),
        };
        headers.push(Header { name, value });
    }
    Ok(headers)
}

/// Splits `n` bytes off the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if bytes.len() < n {
        return Err(DecodeError::BadHeader("a header runs past the end of the header block"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn fixed<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    let mut out = [0; N];
    out.copy_from_slice(take(bytes, N)?);
    Ok(out)
}

/// A value preceded by its u16 big-endian length.
fn short_prefixed<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let length = usize::from(u16::from_be_bytes(fixed(bytes)?));
    take(bytes, length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_types() -> Vec<Header> {
        vec![
            Header::string(":message-type", "event"),
            Header::string(":event-type", "contentBlockDelta"),
            Header { name: "t".into(), value: HeaderValue::Bool(true) },
            Header { name: "f".into(), value: HeaderValue::Bool(false) },
            Header { name: "byte".into(), value: HeaderValue::Byte(-3) },
            Header { name: "short".into(), value: HeaderValue::Short(-300) },
            Header { name: "int".into(), value: HeaderValue::Int(70_000) },
            Header { name: "long".into(), value: HeaderValue::Long(-5_000_000_000) },
            Header { name: "bytes".into(), value: HeaderValue::Bytes(vec![0, 255, 7]) },
            Header { name: "ts".into(), value: HeaderValue::Timestamp(1_700_000_000_000) },
            Header { name: "id".into(), value: HeaderValue::Uuid([9; 16]) },
            Header::string(":content-type", "application/json"),
        ]
    }

    fn stream() -> (Vec<u8>, Vec<Message>) {
        let messages = vec![
            Message { headers: all_types(), payload: br#"{"delta":{"text":"caf\u00e9"}}"#.to_vec() },
            Message { headers: vec![], payload: vec![] },
            Message { headers: vec![Header::string(":event-type", "messageStop")], payload: b"{}".to_vec() },
        ];
        let bytes = messages.iter().flat_map(|m| encode(&m.headers, &m.payload)).collect();
        (bytes, messages)
    }

    #[test]
    fn a_known_frame_decodes() {
        // The empty message from AWS's event-stream test suite (aws-c-event-stream), byte for
        // byte: 16 bytes, no headers, no payload.
        let empty = [0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff];
        assert_eq!(encode(&[], &[]), empty);
        let messages = Decoder::new().push(&empty).unwrap();
        assert_eq!(messages, [Message { headers: vec![], payload: vec![] }]);
    }

    #[test]
    fn frames_split_at_every_offset_decode_the_same() {
        let (bytes, expected) = stream();
        for cut in 0..=bytes.len() {
            let mut decoder = Decoder::new();
            let mut got = decoder.push(&bytes[..cut]).unwrap();
            got.extend(decoder.push(&bytes[cut..]).unwrap());
            assert_eq!(got, expected, "cut at {cut}");
            assert_eq!(decoder.finish(), Ok(()));
        }
        // And one byte at a time.
        let mut decoder = Decoder::new();
        let got: Vec<Message> = bytes.iter().flat_map(|b| decoder.push(&[*b]).unwrap()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_corrupted_prelude_crc_is_an_error_even_before_the_rest_arrives() {
        let (mut bytes, _) = stream();
        bytes[9] ^= 0x01;
        let mut decoder = Decoder::new();
        assert_eq!(decoder.push(&bytes[..12]), Err(DecodeError::PreludeCrc));
        assert_eq!(decoder.push(&bytes[12..]), Err(DecodeError::PreludeCrc));
        assert_eq!(decoder.finish(), Err(DecodeError::PreludeCrc));
        // A changed length is caught by the same check.
        let (mut bytes, _) = stream();
        bytes[3] = bytes[3].wrapping_add(1);
        assert_eq!(Decoder::new().push(&bytes), Err(DecodeError::PreludeCrc));
    }

    #[test]
    fn a_corrupted_message_crc_or_body_byte_is_an_error() {
        let (bytes, _) = stream();
        let first = encode(&all_types(), br#"{"delta":{"text":"caf\u00e9"}}"#).len();
        for at in [12, first / 2, first - 5, first - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert_eq!(Decoder::new().push(&bad), Err(DecodeError::MessageCrc), "byte {at}");
        }
        // The second frame corrupted: the first is still delivered, then the error.
        let mut bad = bytes.clone();
        bad[first + 13] ^= 1;
        let mut decoder = Decoder::new();
        assert_eq!(decoder.push(&bad[..first + 1]).unwrap().len(), 1);
        assert_eq!(decoder.push(&bad[first + 1..]), Err(DecodeError::MessageCrc));
    }

    #[test]
    fn a_stream_that_stops_inside_a_frame_is_truncated() {
        let (bytes, _) = stream();
        for cut in [1, 11, 12, 30, bytes.len() - 1] {
            let mut decoder = Decoder::new();
            let _ = decoder.push(&bytes[..cut]).unwrap();
            assert!(matches!(decoder.finish(), Err(DecodeError::Truncated(_))), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_and_inconsistent_lengths_are_refused() {
        let frame = encode(&[Header::string("a", "b")], &[0; 100]);
        let mut decoder = Decoder::with_max_frame(64);
        assert_eq!(decoder.push(&frame[..12]), Err(DecodeError::TooLarge { length: frame.len(), limit: 64 }));

        let prelude = |total: u32, headers: u32| {
            let mut p = total.to_be_bytes().to_vec();
            p.extend_from_slice(&headers.to_be_bytes());
            let crc = crc32fast::hash(&p);
            p.extend_from_slice(&crc.to_be_bytes());
            p
        };
        assert_eq!(Decoder::new().push(&prelude(15, 0)), Err(DecodeError::BadLength));
        assert_eq!(Decoder::new().push(&prelude(20, 5)), Err(DecodeError::BadLength));
        assert_eq!(
            Decoder::new().push(&prelude(u32::MAX, 0)).unwrap_err(),
            DecodeError::TooLarge { length: u32::MAX as usize, limit: MAX_FRAME_BYTES }
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let with_header_block = |block: &[u8]| {
            let total = (PRELUDE_BYTES + block.len() + 4) as u32;
            let mut out = total.to_be_bytes().to_vec();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_be_bytes());
            out.extend_from_slice(block);
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_be_bytes());
            out
        };
        for (block, why) in [
            (&b"\x01a\x0a"[..], "a header has an unknown value type"),
            (&b"\x01a\x07\x00\x05abc"[..], "a header runs past the end of the header block"),
            (&b"\x01a\x04\x00\x00"[..], "a header runs past the end of the header block"),
            (&b"\x00\x00"[..], "a header has an empty name"),
            (&b"\x01\xff\x00"[..], "a header name is not UTF-8"),
            (&b"\x01a\x07\x00\x01\xff"[..], "a string header value is not UTF-8"),
        ] {
            assert_eq!(Decoder::new().push(&with_header_block(block)), Err(DecodeError::BadHeader(why)));
        }
        // Valid non-string headers of every type are read and skipped by `header_str`.
        let frame = with_header_block(b"\x01a\x09AAAAAAAAAAAAAAAA\x01b\x06\x00\x02xy\x01c\x07\x00\x01z");
        let message = Decoder::new().push(&frame).unwrap().remove(0);
        assert_eq!(message.header_str("a"), None);
        assert_eq!(message.header_str("c"), Some("z"));
    }

    proptest::proptest! {
        /// Whatever bytes arrive, in whatever pieces, the decoder returns, and every message it
        /// returns re-encodes to exactly the bytes it was read from.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)
        ) {
            let mut decoder = Decoder::with_max_frame(1024);
            for chunk in &chunks {
                if decoder.push(chunk).is_err() {
                    break;
                }
            }
            let _ = decoder.finish();
        }

        /// Arbitrary header blocks inside valid framing (both CRCs right, so random bytes get past
        /// them to the header parser): the decoder returns, and what it accepts re-encodes to the
        /// same bytes. The fuzz target `eventstream` checks the same on any input.
        #[test]
        fn arbitrary_header_blocks_parse_or_fail_cleanly(
            block in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        ) {
            let total = (PRELUDE_BYTES + block.len() + payload.len() + 4) as u32;
            let mut frame = total.to_be_bytes().to_vec();
            frame.extend_from_slice(&(block.len() as u32).to_be_bytes());
            let crc = crc32fast::hash(&frame);
            frame.extend_from_slice(&crc.to_be_bytes());
            frame.extend_from_slice(&block);
            frame.extend_from_slice(&payload);
            let crc = crc32fast::hash(&frame);
            frame.extend_from_slice(&crc.to_be_bytes());
            match Decoder::new().push(&frame) {
                Ok(messages) => {
                    proptest::prop_assert_eq!(messages.len(), 1);
                    proptest::prop_assert_eq!(encode(&messages[0].headers, &messages[0].payload), frame);
                }
                Err(error) => proptest::prop_assert!(matches!(error, DecodeError::BadHeader(_))),
            }
        }

        #[test]
        fn encoded_messages_round_trip_at_any_split(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..4),
            names in proptest::collection::vec("[a-z:-]{1,12}", 0..4),
            values in proptest::collection::vec(".{0,20}", 4),
            cut in 0usize..400,
        ) {
            let headers: Vec<Header> = names.iter().zip(&values).map(|(n, v)| Header::string(n.clone(), v.clone())).collect();
            let messages: Vec<Message> = payloads.into_iter().map(|payload| Message { headers: headers.clone(), payload }).collect();
            let bytes: Vec<u8> = messages.iter().flat_map(|m| encode(&m.headers, &m.payload)).collect();
            let cut = cut.min(bytes.len());
            let mut decoder = Decoder::new();
            let mut got = decoder.push(&bytes[..cut]).unwrap();
            got.extend(decoder.push(&bytes[cut..]).unwrap());
            proptest::prop_assert_eq!(got, messages);
            proptest::prop_assert_eq!(decoder.finish(), Ok(()));
        }
    }
}
