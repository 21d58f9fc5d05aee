//! The Databricks workspace: where its URL and credentials come from (unified auth
//! resolution: config, `DATABRICKS_*`, `~/.databrickscfg`, `.netrc`), authenticated HTTP calls
//! with the SDKs' retry rules, and the Lakebase and identity endpoints lakepool needs.

pub mod api;
pub mod http;
pub mod ini;
pub mod netrc;
pub mod resolve;
pub mod textfile;
pub mod token;
pub mod transport;
