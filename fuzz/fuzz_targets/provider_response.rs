#![no_main]
//! See `harness::provider_response` in `fuzz/harness.rs`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::provider_response(data));
