//! libFuzzer target `frame`: see `lakepool::fuzzing::frame` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lakepool::fuzzing::frame::run(data));
