//! Upstream credentials: where the pool gets the host, role and password for each new server
//! connection.
//!
//! - [`source`]: the [`source::Credential`] type, the [`source::CredentialSource`] trait and
//!   [`source::Pinned`], the one place where a configured host or role wins over the one the
//!   workspace reports.
//! - [`fixed`]: the static source (a native role's password from the config).
//! - [`lakebase`]: the rotating source (Lakebase database credentials minted through the
//!   workspace API) and its refresher.
//! - [`status`]: the refresh status views read.
//! - [`passthrough`]: per-identity pass-through: client tokens checked with the workspace,
//!   and each identity's credential minted with its own token.
//!
//! Dependencies point one way: `status` and `source` are leaves; `fixed` and `lakebase` use
//! them and `crate::workspace`; nothing here imports `upstream`, which imports this.

pub mod fixed;
pub(crate) mod lakebase;
pub(crate) mod passthrough;
pub mod source;
pub(crate) mod status;
