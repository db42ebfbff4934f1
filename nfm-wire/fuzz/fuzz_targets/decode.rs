//! Untrusted bytes through every decoder entry: `decode` (datagram), re-encode what decodes and
//! check it decodes to the same message, and the stream decoder over the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfm_wire::{decode, encode_to_vec, DecodeOptions, StreamDecoder};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions::default();
    if let Ok(p) = decode(data, &opts) {
        let again = encode_to_vec(&p.header, &p.message, None);
        let q = decode(&again, &opts).expect("re-encoded frame must decode");
        assert_eq!(p.message, q.message);
    }
    let mut s = StreamDecoder::new(64 * 1024);
    for chunk in data.chunks(7) {
        s.push(chunk);
        loop {
            match s.next_packet(&opts) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
});
