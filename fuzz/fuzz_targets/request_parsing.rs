#![no_main]
//! See `harness::request_parsing` in `fuzz/harness.rs`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::request_parsing(data));
