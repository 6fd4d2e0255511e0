//! Fuzz target `equivocation`: see [`gatelog_fuzz::parsers::equivocation`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run equivocation -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::equivocation(data));
