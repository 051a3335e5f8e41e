//! Fuzz target `page`: see `src/` for the properties it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| source_postmark_fuzz::check("page", data));
