//! How a pool opens a server connection. An enum rather than a trait object: production
//! builds have the one real variant, so the call is static and allocates nothing; unit tests
//! add a scripted double ([`super::fake`]) so the pool, the limits and the registry can be
//! tested without a server, on a paused clock.

use std::time::Duration;

use crate::upstream::Upstream;
use crate::upstream::connect::{UpstreamError, connect_within};
use crate::upstream::server::ServerConn;

/// Opens server connections for the pools of a registry.
#[derive(Debug, Clone, Default)]
pub(crate) enum Connector {
    /// TCP, TLS and login to the pool's upstream with its current credential.
    #[default]
    Upstream,
    /// A scripted stand-in for a server (unit tests).
    #[cfg(test)]
    Fake(std::sync::Arc<super::fake::FakeUpstream>),
}

impl Connector {
    /// Opens and logs in one connection with id `id` to `up` within `limit`.
    pub(super) async fn connect(
        &self,
        up: &Upstream,
        id: u64,
        limit: Duration,
    ) -> Result<ServerConn, UpstreamError> {
        match self {
            Connector::Upstream => connect_within(up, id, limit).await,
            #[cfg(test)]
            Connector::Fake(fake) => fake.connect(id, limit).await,
        }
    }
}
