//! The Lakebase and identity endpoints lakepool calls (shapes: shared/design/lakebase-api.md).

use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::http::{ApiClient, ApiError};

/// A minted database credential.
pub(crate) struct DbCredential {
    /// The token to use as the Postgres password.
    pub(crate) token: SecretString,
    /// How long it works for new logins, from when the answer arrived.
    pub(crate) lifetime: Duration,
}

/// SCIM Me.
const ME: &str = "/api/2.0/preview/scim/v2/Me";
/// Longest lifetime believed (Lakebase credentials live at most an hour).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Assumed lifetime when the answer has no usable expiry (the fact sheet's advice).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Clock difference with the workspace worth a warning.
const SKEW_WARNING: Duration = Duration::from_secs(60);

/// A provisioned instance, as far as lakepool cares.
#[derive(Debug, Deserialize)]
pub(crate) struct Instance {
    /// `AVAILABLE`, `STARTING`, `STOPPED`…
    #[serde(default)]
    pub(crate) state: Option<String>,
    /// Host for read/write connections.
    #[serde(default)]
    pub(crate) read_write_dns: Option<String>,
}

#[derive(Deserialize)]
struct EndpointHosts {
    host: Option<String>,
}

#[derive(Deserialize)]
struct EndpointStatus {
    current_state: Option<String>,
    hosts: Option<EndpointHosts>,
}

#[derive(Deserialize)]
struct EndpointObject {
    status: Option<EndpointStatus>,
}

/// An autoscaling endpoint's state and host.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// `ACTIVE`, `IDLE`, `INIT`, `DEGRADED`…
    pub(crate) state: Option<String>,
    /// `status.hosts.host`.
    pub(crate) host: Option<String>,
}

/// The caller as SCIM Me reports it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Me {
    /// A user's e-mail, or a service principal's application id.
    #[serde(rename = "userName")]
    pub user_name: Option<String>,
    /// A service principal's application id (absent for users).
    #[serde(rename = "applicationId")]
    pub application_id: Option<String>,
}

#[derive(Deserialize)]
struct InstanceCredential {
    token: String,
    expiration_time: Option<String>,
}

#[derive(Deserialize)]
struct EndpointCredential {
    token: String,
    expire_time: Option<String>,
}

/// Parses an RFC 3339 timestamp with or without fractional seconds.
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// How long a credential with expiry `raw` lives: the expiry minus the workspace's clock when
/// it answered (`server_now`, its `Date` header), so a skewed local clock can neither make a
/// fresh credential look expired (a refresh loop) nor stretch its life (a late refresh). Without
/// a `Date`, the local clock (`local_now`) is all there is. A missing or unparseable expiry
/// means one hour (the fact sheet's advice); both are logged.
fn lifetime(raw: Option<&str>, server_now: Option<SystemTime>, local_now: SystemTime) -> Duration {
    let Some(expires) = raw.and_then(parse_time) else {
        tracing::warn!(
            value = raw.unwrap_or(""),
            "credential expiry missing or unparseable; assuming one hour"
        );
        return DEFAULT_LIFETIME;
    };
    if let Some(server) = server_now {
        let skew = match server.duration_since(local_now) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > SKEW_WARNING {
            tracing::warn!(
                skew_s = skew.as_secs(),
                "the workspace's clock and the local clock differ; credential lifetimes are \
                 measured against the workspace's clock"
            );
        }
    }
    let reference = server_now.unwrap_or(local_now);
    match expires.duration_since(reference) {
        Ok(d) => d.min(MAX_LIFETIME),
        Err(_) => {
            tracing::warn!("the workspace returned a credential that has already expired");
            Duration::ZERO
        }
    }
}

/// A fresh UUIDv4 for `request_id`, as the SDKs send.
fn request_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl ApiClient {
    /// The caller's identity (`userName`: a user's email or a service principal's application id).
    pub(crate) async fn current_user(&self) -> Result<String, ApiError> {
        self.me().await?.user_name.ok_or_else(|| ApiError::Decode {
            host: self.host().to_owned(),
            path: ME.to_owned(),
            reason: "no userName in the response".to_owned(),
        })
    }

    /// `GET /api/2.0/preview/scim/v2/Me`: who the caller's token authenticates.
    pub async fn me(&self) -> Result<Me, ApiError> {
        self.get(ME).await
    }

    /// `GET /api/2.0/database/instances/{name}`.
    pub(crate) async fn instance(&self, name: &str) -> Result<Instance, ApiError> {
        self.get(&format!("/api/2.0/database/instances/{name}"))
            .await
    }

    /// `POST /api/2.0/database/credentials` for one instance.
    pub(crate) async fn instance_credential(&self, name: &str) -> Result<DbCredential, ApiError> {
        let (c, server_now): (InstanceCredential, _) = self
            .post_dated(
                "/api/2.0/database/credentials",
                &json!({ "instance_names": [name], "request_id": request_id() }),
            )
            .await?;
        Ok(DbCredential {
            lifetime: lifetime(c.expiration_time.as_deref(), server_now, SystemTime::now()),
            token: SecretString::from(c.token),
        })
    }

    /// `GET /api/2.0/postgres/{name}` for an endpoint.
    pub(crate) async fn endpoint(&self, name: &str) -> Result<Endpoint, ApiError> {
        let e: EndpointObject = self.get(&format!("/api/2.0/postgres/{name}")).await?;
        let status = e.status;
        Ok(Endpoint {
            state: status.as_ref().and_then(|s| s.current_state.clone()),
            host: status.and_then(|s| s.hosts).and_then(|h| h.host),
        })
    }

    /// `POST /api/2.0/postgres/credentials` for an endpoint, with an optional lifetime.
    pub(crate) async fn endpoint_credential(
        &self,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<DbCredential, ApiError> {
        let body = match ttl {
            Some(t) => json!({ "endpoint": name, "ttl": format!("{}s", t.as_secs()) }),
            None => json!({ "endpoint": name }),
        };
        let (c, server_now): (EndpointCredential, _) = self
            .post_dated("/api/2.0/postgres/credentials", &body)
            .await?;
        Ok(DbCredential {
            lifetime: lifetime(c.expire_time.as_deref(), server_now, SystemTime::now()),
            token: SecretString::from(c.token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_with_and_without_fractions() {
        let a = parse_time("2026-01-01T00:00:00Z").unwrap();
        let b = parse_time("2026-01-01T00:00:00.123456Z").unwrap();
        let c = parse_time("2026-01-01T01:00:00+01:00").unwrap();
        assert_eq!(a, c);
        assert_eq!(b.duration_since(a).unwrap(), Duration::from_micros(123_456));
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn missing_expiry_means_an_hour() {
        let now = SystemTime::now();
        assert_eq!(lifetime(None, None, now), DEFAULT_LIFETIME);
        assert_eq!(lifetime(Some("garbage"), Some(now), now), DEFAULT_LIFETIME);
    }

    #[test]
    fn lifetime_is_measured_against_the_workspace_clock() {
        let server = parse_time("2026-01-01T00:00:00Z").unwrap();
        let expiry = Some("2026-01-01T01:00:00Z");
        let hour = Duration::from_secs(3600);
        // Local clock two hours behind or ahead: the same lifetime either way.
        for local in [server - 2 * hour, server + 2 * hour, server] {
            assert_eq!(lifetime(expiry, Some(server), local), hour);
        }
        // Without a Date header the local clock is the reference.
        assert_eq!(lifetime(expiry, None, server + hour / 2), hour / 2);
        // Already expired by the workspace's clock: zero, not a wrap-around.
        assert_eq!(
            lifetime(expiry, Some(server + 2 * hour), server),
            Duration::ZERO
        );
        // Nonsense far-future expiries are capped.
        assert_eq!(
            lifetime(Some("2099-01-01T00:00:00Z"), Some(server), server),
            MAX_LIFETIME
        );
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, request_id());
    }
}
