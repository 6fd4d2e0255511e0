//! Fuzz target `bundle`: see [`gatelog_fuzz::parsers::bundle`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run bundle -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::bundle(data));
