//! Fuzz target `note`: see [`gatelog_fuzz::parsers::note`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run note -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::note(data));
