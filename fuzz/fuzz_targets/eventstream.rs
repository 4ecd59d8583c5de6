//! Bedrock's event-stream decoder on arbitrary bytes cut at an arbitrary point: it never panics,
//! every message it returns re-encodes to exactly the bytes it was read from, in order, and a
//! stream it accepts to the end is wholly made of those messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_providers::bedrock::eventstream::{encode, Decoder};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let cut = usize::from(cut) * bytes.len() / 255;
    let mut decoder = Decoder::with_max_frame(64 * 1024);
    let mut consumed = 0;
    for part in [&bytes[..cut], &bytes[cut..]] {
        let Ok(messages) = decoder.push(part) else { return };
        for message in messages {
            let frame = encode(&message.headers, &message.payload);
            assert_eq!(bytes.get(consumed..consumed + frame.len()), Some(&frame[..]));
            consumed += frame.len();
        }
    }
    match decoder.finish() {
        Ok(()) => assert_eq!(consumed, bytes.len()),
        Err(_) => assert!(consumed < bytes.len()),
    }
});
