//! What the Lakebase refresher needs from the workspace, as a trait: the workspace API client
//! implements it, and the unit tests implement it with a scripted double.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use secrecy::SecretString;

use crate::workspace::http::{ApiClient, ApiError};

/// What the credential is minted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakebaseTarget {
    /// A provisioned instance.
    Instance(String),
    /// An autoscaling endpoint, with an optional requested lifetime.
    Endpoint {
        /// Resource name.
        name: String,
        /// Requested lifetime.
        ttl: Option<Duration>,
    },
}

impl LakebaseTarget {
    /// "instance X" / "endpoint projects/…".
    pub fn describe(&self) -> String {
        match self {
            LakebaseTarget::Instance(n) => format!("instance {n}"),
            LakebaseTarget::Endpoint { name, .. } => format!("endpoint {name}"),
        }
    }

    /// Whether a host looked up in `state` may be connected to: the CLI's rule (`AVAILABLE`
    /// for an instance, `ACTIVE` or `IDLE` for an endpoint, IDLE waking on connect; cli
    /// `cmd/psql/psql_provisioned.go`, `psql_autoscaling.go`). An endpoint answer without a
    /// state is taken as ready.
    pub fn ready(&self, state: Option<&str>) -> bool {
        match self {
            LakebaseTarget::Instance(_) => state == Some("AVAILABLE"),
            LakebaseTarget::Endpoint { .. } => state.is_none_or(|s| matches!(s, "ACTIVE" | "IDLE")),
        }
    }
}

/// An instance or endpoint as the workspace reports it.
#[derive(Debug, Clone, Default)]
pub struct Located {
    /// `AVAILABLE`, `UPDATING`, `ACTIVE`, `IDLE`…
    pub state: Option<String>,
    /// The read/write host, when the answer has one.
    pub host: Option<String>,
}

/// A minted database credential.
pub struct Minted {
    /// The token to use as the Postgres password.
    pub token: SecretString,
    /// How long it works for new logins from the moment it was received, measured against
    /// the workspace's clock (not the local one).
    pub lifetime: Duration,
}

/// Future of a workspace call.
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// The workspace calls a Lakebase credential needs.
pub trait LakebaseApi: Send + Sync + std::fmt::Debug {
    /// State and host of the instance or endpoint.
    fn locate<'a>(&'a self, target: &'a LakebaseTarget) -> ApiFuture<'a, Located>;
    /// The caller's identity (SCIM Me `userName`), the default Postgres role.
    fn identity(&self) -> ApiFuture<'_, String>;
    /// A new database credential.
    fn mint<'a>(&'a self, target: &'a LakebaseTarget) -> ApiFuture<'a, Minted>;
    /// "https://workspace (auth method)", for descriptions.
    fn describe(&self) -> String;
    /// Why the newest call failed, even one still being retried (cleared by a success).
    fn last_failure(&self) -> Option<String>;
}

impl LakebaseApi for ApiClient {
    fn locate<'a>(&'a self, target: &'a LakebaseTarget) -> ApiFuture<'a, Located> {
        Box::pin(async move {
            Ok(match target {
                LakebaseTarget::Instance(name) => {
                    let i = self.instance(name).await?;
                    Located {
                        state: i.state,
                        host: i.read_write_dns,
                    }
                }
                LakebaseTarget::Endpoint { name, .. } => {
                    let e = self.endpoint(name).await?;
                    Located {
                        state: e.state,
                        host: e.host,
                    }
                }
            })
        })
    }

    fn identity(&self) -> ApiFuture<'_, String> {
        Box::pin(self.current_user())
    }

    fn mint<'a>(&'a self, target: &'a LakebaseTarget) -> ApiFuture<'a, Minted> {
        Box::pin(async move {
            let c = match target {
                LakebaseTarget::Instance(name) => self.instance_credential(name).await?,
                LakebaseTarget::Endpoint { name, ttl } => {
                    self.endpoint_credential(name, *ttl).await?
                }
            };
            Ok(Minted {
                token: c.token,
                lifetime: c.lifetime,
            })
        })
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.host(), self.token_source().kind())
    }

    fn last_failure(&self) -> Option<String> {
        ApiClient::last_failure(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_cli() {
        let i = LakebaseTarget::Instance("i".into());
        assert!(i.ready(Some("AVAILABLE")));
        for s in ["STARTING", "UPDATING", "FAILING_OVER", "STOPPED"] {
            assert!(!i.ready(Some(s)), "{s}");
        }
        assert!(!i.ready(None));
        let e = LakebaseTarget::Endpoint {
            name: "projects/p/branches/b/endpoints/e".into(),
            ttl: None,
        };
        assert!(e.ready(Some("ACTIVE")) && e.ready(Some("IDLE")) && e.ready(None));
        assert!(!e.ready(Some("INIT")) && !e.ready(Some("DEGRADED")));
    }
}
