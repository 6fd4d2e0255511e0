//! Fuzz target `witness_body`: see [`gatelog_fuzz::parsers::witness_body`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run witness_body -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::witness_body(data));
