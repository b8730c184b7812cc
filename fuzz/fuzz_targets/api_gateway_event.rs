#![no_main]
//! See `harness::api_gateway_event` in `fuzz/harness.rs`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::api_gateway_event(data));
