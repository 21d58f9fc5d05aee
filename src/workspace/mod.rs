//! The Databricks workspace: where its URL and credentials come from (unified auth
//! resolution: config, environment, `~/.databrickscfg`, `.netrc`: `resolve`), how each auth
//! method gets a token (`auth`), authenticated HTTP calls with the SDKs' retry rules (`http`,
//! over `transport`), and the Lakebase and identity endpoints lakepool needs (`api`).
//!
//! Dependencies point one way: `transport`, `textfile`, `host` and `methods` (what each auth
//! method needs) are leaves; `ini`, `netrc` → `textfile`; `resolve` → `methods`, `host`, `ini`,
//! `netrc`; `auth` → `methods`, `host`, `transport`; `http` → `auth`, `transport`; `api` →
//! `http`.

pub mod api;
pub mod auth;
pub mod host;
pub mod http;
pub mod ini;
pub mod methods;
pub mod netrc;
pub mod resolve;
pub mod textfile;
pub mod transport;
