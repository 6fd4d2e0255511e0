//! Fuzz target `policy`: see [`gatelog_fuzz::parsers::policy`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run policy -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::policy(data));
