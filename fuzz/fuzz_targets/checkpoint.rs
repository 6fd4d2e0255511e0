//! Fuzz target `checkpoint`: see [`gatelog_fuzz::parsers::checkpoint`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run checkpoint -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::checkpoint(data));
