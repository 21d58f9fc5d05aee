//! libFuzzer target `startup`: see `lakepool::fuzzing::startup` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lakepool::fuzzing::startup::run(data));
