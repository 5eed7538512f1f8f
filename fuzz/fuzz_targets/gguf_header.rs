//! Fuzz target `gguf_header`: untrusted bytes as a GGUF file through the bounded header reader
//! (`GgufHeader::read_from`), and, when it accepts them, through candle's
//! `gguf_file::Content::read`, which must then neither panic nor allocate past the file. The
//! body is `ets_engine::gguf::screen_bytes`, which the corpus replay test runs on every seed.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ets_engine::gguf::screen_bytes(data);
});
