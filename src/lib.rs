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
pub mod error;
pub mod frontend;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod net;
pub mod pool;
pub mod proto;
pub mod upstream;
pub mod workspace;
