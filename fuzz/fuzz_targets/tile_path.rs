//! Fuzz target `tile_path`: see [`gatelog_fuzz::parsers::tile_path`].
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run tile_path -- -max_total_time=600

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatelog_fuzz::parsers::tile_path(data));
