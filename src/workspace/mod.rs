//! The Databricks workspace: where its URL and credentials come from (unified auth
//! resolution: config, environment, `~/.databrickscfg`, `.netrc`: `resolve`), how each auth
//! method gets a token (`auth`), authenticated HTTP calls with the SDKs' retry rules (`http`,
//! over `transport`), and the Lakebase and identity endpoints lakepool needs (`api`).
//!
//! Dependencies point one way: `transport`, `textfile`, `host` and `methods` (what each auth
//! method needs) are leaves; `ini`, `netrc` → `textfile`; `resolve` → `methods`, `host`, `ini`,
//! `netrc`; `auth` → `methods`, `host`, `transport`; `http` → `auth`, `transport`; `api` →
//! `http`.

pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod host;
pub(crate) mod http;
pub(crate) mod ini;
pub(crate) mod methods;
pub(crate) mod netrc;
pub(crate) mod resolve;
pub(crate) mod textfile;
pub(crate) mod transport;
