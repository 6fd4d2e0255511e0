//! Fuzz target `tlog_proof`: see [`gatelog_fuzz::parsers::tlog_proof`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run tlog_proof -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::tlog_proof(data));
