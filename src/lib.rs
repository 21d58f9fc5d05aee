//! lakepool: a PostgreSQL connection pooler for Databricks Lakebase.
//!
//! Module dependencies point one way: `proto` (codec) ← `net` / `auth` ← `upstream` ← `pool` ←
//! `frontend` ← `app`. See ARCHITECTURE.md.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::todo,
    clippy::dbg_macro
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod error;
pub mod frontend;
pub mod logsafe;
pub mod net;
pub mod pool;
pub mod proto;
pub mod upstream;
pub mod workspace;

/// The git commit lakepool was built from (`unknown` when built without git; see build.rs).
pub const COMMIT: &str = env!("LAKEPOOL_COMMIT");
/// Version and commit, as `--version` and the startup line give them.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LAKEPOOL_COMMIT"),
    ")"
);
/// `lakepool <version> (commit <commit>)`, as `SHOW VERSION` gives it.
pub const VERSION_LINE: &str = concat!(
    "lakepool ",
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LAKEPOOL_COMMIT"),
    ")"
);
