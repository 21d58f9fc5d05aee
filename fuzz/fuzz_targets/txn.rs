//! libFuzzer target `txn`: see `lakepool::fuzzing::txn` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lakepool::fuzzing::txn::run(data));
