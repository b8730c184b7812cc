#![no_main]
//! See `harness::stored_record` in `fuzz/harness.rs`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::stored_record(data));
