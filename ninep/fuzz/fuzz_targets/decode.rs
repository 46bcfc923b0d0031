//! `cargo +nightly fuzz run decode` (from ninep/): the decoder never panics
//! and everything it accepts re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ninep::fuzzcheck::check(data);
});
