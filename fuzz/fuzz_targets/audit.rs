//! Fuzz target `audit`: see [`gatelog_fuzz::parsers::audit`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run audit -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::audit(data));
