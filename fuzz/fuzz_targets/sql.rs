//! libFuzzer target `sql`: see `lakepool::fuzzing::sql` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lakepool::fuzzing::sql::run(data));
