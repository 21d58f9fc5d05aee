//! Fuzz harnesses: one entry point per target, each feeding arbitrary bytes to a part of
//! lakepool that a peer controls and checking what that part promises. A broken promise
//! panics, which is what a fuzzer reports.
//!
//! The libFuzzer targets in `fuzz/` (nightly, cargo-fuzz) call these functions through the
//! `fuzzing` feature; a stable smoke test (`smoke`) replays the committed corpora and a
//! fixed-seed mutation run through them on every `cargo test`. See FUZZING.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod frame;
mod input;
mod server_model;
pub mod sql;
pub mod startup;
mod stream;
pub mod txn;

#[cfg(test)]
mod smoke;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The targets by name, as the `fuzz/` binaries and the corpus directories name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame::run),
    ("sql", sql::run),
    ("startup", startup::run),
    ("txn", txn::run),
];
