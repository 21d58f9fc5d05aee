//! lakepool: a PostgreSQL connection pooler for Databricks Lakebase.
//!
//! Module dependencies point one way: `proto` (codec) ← `net` / `auth` ← `upstream` ← `pool` ←
//! `shared` ← `frontend` / `admin` ← `app`. See ARCHITECTURE.md.

// One audited exception: net::listen sets TCP_DEFER_ACCEPT, which no safe crate exposes.
#![deny(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::todo,
    clippy::dbg_macro
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub(crate) mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod credentials;
pub(crate) mod error;
pub(crate) mod frontend;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub(crate) mod logsafe;
pub mod net;
pub(crate) mod pool;
pub(crate) mod proto;
pub(crate) mod shared;
pub mod upstream;
pub mod worker;
pub(crate) mod workspace;

/// The git commit lakepool was built from (`unknown` when built without git; see build.rs).
pub(crate) const COMMIT: &str = env!("LAKEPOOL_COMMIT");
/// Version and commit, as `--version` and the startup line give them.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LAKEPOOL_COMMIT"),
    ")"
);
/// `lakepool <version> (commit <commit>)`, as `SHOW VERSION` gives it.
pub(crate) const VERSION_LINE: &str = concat!(
    "lakepool ",
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LAKEPOOL_COMMIT"),
    ")"
);
