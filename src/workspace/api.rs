//! The Lakebase and identity endpoints lakepool calls (shapes: shared/design/lakebase-api.md).

use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::http::{ApiClient, ApiError};

/// A minted database credential.
pub struct DbCredential {
    /// The token to use as the Postgres password.
    pub token: SecretString,
    /// When it stops working for new logins.
    pub expires_at: SystemTime,
}

/// A provisioned instance, as far as lakepool cares.
#[derive(Debug, Deserialize)]
pub struct Instance {
    /// `AVAILABLE`, `STARTING`, `STOPPED`…
    #[serde(default)]
    pub state: Option<String>,
    /// Host for read/write connections.
    #[serde(default)]
    pub read_write_dns: Option<String>,
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
pub struct Endpoint {
    /// `ACTIVE`, `IDLE`, `INIT`, `DEGRADED`…
    pub state: Option<String>,
    /// `status.hosts.host`.
    pub host: Option<String>,
}

#[derive(Deserialize)]
struct Me {
    #[serde(rename = "userName")]
    user_name: Option<String>,
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
pub fn parse_time(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Expiry from the response, or issue time + 1 h when it is missing or unparseable (as the
/// fact sheet advises), with a warning.
fn expiry(raw: Option<&str>, issued: SystemTime) -> SystemTime {
    match raw.and_then(parse_time) {
        Some(t) => t,
        None => {
            tracing::warn!(
                value = raw.unwrap_or(""),
                "credential expiry missing or unparseable; assuming one hour"
            );
            issued + Duration::from_secs(3600)
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
    pub async fn current_user(&self) -> Result<String, ApiError> {
        let me: Me = self.get("/api/2.0/preview/scim/v2/Me").await?;
        me.user_name.ok_or_else(|| ApiError::Decode {
            host: self.host().to_owned(),
            path: "/api/2.0/preview/scim/v2/Me".to_owned(),
            reason: "no userName in the response".to_owned(),
        })
    }

    /// `GET /api/2.0/database/instances/{name}`.
    pub async fn instance(&self, name: &str) -> Result<Instance, ApiError> {
        self.get(&format!("/api/2.0/database/instances/{name}"))
            .await
    }

    /// `POST /api/2.0/database/credentials` for one instance.
    pub async fn instance_credential(&self, name: &str) -> Result<DbCredential, ApiError> {
        let issued = SystemTime::now();
        let c: InstanceCredential = self
            .post(
                "/api/2.0/database/credentials",
                &json!({ "instance_names": [name], "request_id": request_id() }),
            )
            .await?;
        Ok(DbCredential {
            expires_at: expiry(c.expiration_time.as_deref(), issued),
            token: SecretString::from(c.token),
        })
    }

    /// `GET /api/2.0/postgres/{name}` for an endpoint.
    pub async fn endpoint(&self, name: &str) -> Result<Endpoint, ApiError> {
        let e: EndpointObject = self.get(&format!("/api/2.0/postgres/{name}")).await?;
        let status = e.status;
        Ok(Endpoint {
            state: status.as_ref().and_then(|s| s.current_state.clone()),
            host: status.and_then(|s| s.hosts).and_then(|h| h.host),
        })
    }

    /// `POST /api/2.0/postgres/credentials` for an endpoint, with an optional lifetime.
    pub async fn endpoint_credential(
        &self,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<DbCredential, ApiError> {
        let issued = SystemTime::now();
        let body = match ttl {
            Some(t) => json!({ "endpoint": name, "ttl": format!("{}s", t.as_secs()) }),
            None => json!({ "endpoint": name }),
        };
        let c: EndpointCredential = self.post("/api/2.0/postgres/credentials", &body).await?;
        Ok(DbCredential {
            expires_at: expiry(c.expire_time.as_deref(), issued),
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
        assert_eq!(expiry(None, now), now + Duration::from_secs(3600));
        assert_eq!(
            expiry(Some("garbage"), now),
            now + Duration::from_secs(3600)
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
