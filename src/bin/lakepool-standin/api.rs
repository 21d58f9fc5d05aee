//! The workspace API handlers: OAuth discovery and token, SCIM Me, database instances,
//! postgres endpoints, and the two credential endpoints.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::CACHE_CONTROL;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::http::{Req, Resp, api_error, form_get, json, parse_basic, parse_form};
use crate::state::{
    Identity, State, is_endpoint_name, random_token, rfc3339_frac, rfc3339_secs, stable_uuid,
};

/// Random bytes in a database credential (base64url: 160 characters).
const DB_TOKEN_BYTES: usize = 120;
/// Accepted `ttl` / `expire_time` distance for endpoint credentials.
const MIN_TTL: Duration = Duration::from_secs(300);
const MAX_TTL: Duration = Duration::from_secs(3600);

/// `GET /oidc/.well-known/oauth-authorization-server`.
pub fn discovery(st: &State) -> Resp {
    let token_endpoint = st
        .lock()
        .discovery_token_endpoint
        .clone()
        .unwrap_or_else(|| format!("{}/oidc/v1/token", st.base));
    json(
        StatusCode::OK,
        &json!({
            "issuer": format!("{}/oidc", st.base),
            "token_endpoint": token_endpoint,
            "authorization_endpoint": format!("{}/oidc/v1/authorize", st.base),
            "grant_types_supported": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }),
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Resp {
    json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// `POST /oidc/v1/token`: client credentials (Basic auth or form fields), or RFC 8693 token
/// exchange for workload identity federation.
pub fn token(st: &State, r: &Req) -> Resp {
    let form = parse_form(&r.body);
    if form_get(&form, "grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange") {
        return match crate::idp::token_exchange(st, &form) {
            Ok(user) => access_token_answer(st, user, &form),
            Err(resp) => *resp,
        };
    }
    let creds = r
        .authorization
        .as_deref()
        .and_then(parse_basic)
        .or_else(|| {
            Some((
                form_get(&form, "client_id")?.to_owned(),
                form_get(&form, "client_secret")?.to_owned(),
            ))
        });
    // RFC 6749 §2.3.1 form-encodes id and secret inside Basic auth; most clients do not.
    let user = creds.and_then(|(id, secret)| {
        st.client(&id, &secret).or_else(|| {
            st.client(
                &crate::http::percent_decode(&id, true),
                &crate::http::percent_decode(&secret, true),
            )
        })
    });
    let Some(user) = user else {
        tracing::info!("token request refused: client authentication failed");
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    };
    if form_get(&form, "grant_type") != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only grant_type=client_credentials is supported",
        );
    }
    access_token_answer(st, user, &form)
}

/// A workspace access token for `user`, in the OAuth answer shape.
fn access_token_answer(st: &State, user: String, form: &[(String, String)]) -> Resp {
    let scope = form_get(form, "scope")
        .filter(|s| !s.is_empty())
        .unwrap_or("all-apis")
        .to_owned();
    let token = st.issue_access_token(user.clone());
    tracing::info!(
        "issued workspace access token for {user}, expires in {}s",
        st.oauth_lifetime.as_secs()
    );
    let mut resp = json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": st.oauth_lifetime.as_secs(),
            "scope": scope,
        }),
    );
    resp.headers_mut().insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `GET /api/2.0/preview/scim/v2/Me`.
pub fn me(id: &Identity) -> Resp {
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": stable_uuid(&id.user).replace('-', "")[..16].to_owned(),
        "userName": id.user,
        "displayName": id.user,
        "active": true,
    });
    if id.service_principal {
        v["applicationId"] = json!(id.user);
    }
    json(StatusCode::OK, &v)
}

fn not_found(kind: &str, name: &str) -> Resp {
    api_error(
        StatusCode::NOT_FOUND,
        "RESOURCE_DOES_NOT_EXIST",
        format!("{kind} '{name}' does not exist."),
    )
}

/// `GET /api/2.0/database/instances/{name}`.
pub fn instance(st: &State, name: &str) -> Resp {
    let g = st.lock();
    let Some(t) = g.instances.get(name) else {
        return not_found("Database instance", name);
    };
    json(
        StatusCode::OK,
        &json!({
            "name": name,
            "uid": t.uid,
            "state": t.state,
            "read_write_dns": t.host,
            "pg_version": "PG_VERSION_16",
            "capacity": "CU_1",
            "effective_stopped": t.state == "STOPPED",
        }),
    )
}

/// `GET /api/2.0/postgres/{projects/p/branches/b/endpoints/e}`.
pub fn endpoint(st: &State, name: &str) -> Resp {
    let g = st.lock();
    let Some(t) = g.endpoints.get(name).filter(|_| is_endpoint_name(name)) else {
        return not_found("Endpoint", name);
    };
    json(
        StatusCode::OK,
        &json!({
            "name": name,
            "uid": t.uid,
            "status": {
                "current_state": t.state,
                "endpoint_type": "ENDPOINT_TYPE_READ_WRITE",
                "hosts": { "host": t.host },
            },
        }),
    )
}

/// Generates a token, installs it as `identity`'s password until `expires`, logs it (without
/// the token).
async fn mint(st: &State, identity: &str, expires: OffsetDateTime) -> Result<String, Resp> {
    let token = random_token(DB_TOKEN_BYTES);
    let until = rfc3339_frac(expires);
    match st.minter.mint(identity, &token, &until).await {
        Ok(()) => {
            tracing::info!("minted credential for {identity}, expires {until}");
            Ok(token)
        }
        Err(e) => {
            tracing::warn!("minting a credential for {identity} failed: {e}");
            Err(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("Could not generate a database credential: {e}"),
            ))
        }
    }
}

fn invalid(message: impl Into<String>) -> Resp {
    api_error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
}

#[derive(Deserialize)]
struct InstanceCredentialBody {
    instance_names: Option<Vec<String>>,
    #[allow(dead_code)]
    request_id: Option<String>,
}

/// `POST /api/2.0/database/credentials`.
pub async fn instance_credential(st: &State, id: &Identity, r: &Req) -> Resp {
    let b: InstanceCredentialBody = match r.json() {
        Ok(b) => b,
        Err(e) => return *e,
    };
    let names = b.instance_names.unwrap_or_default();
    if names.is_empty() {
        return invalid("instance_names must name at least one database instance");
    }
    let lifetime = {
        let g = st.lock();
        if let Some(n) = names.iter().find(|n| !g.instances.contains_key(n.as_str())) {
            return not_found("Database instance", n);
        }
        g.lifetime
    };
    let expires = OffsetDateTime::now_utc() + lifetime;
    match mint(st, &id.user, expires).await {
        Ok(token) => json(
            StatusCode::OK,
            &json!({ "token": token, "expiration_time": rfc3339_frac(st.reported(expires)) }),
        ),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct EndpointCredentialBody {
    endpoint: Option<String>,
    ttl: Option<String>,
    expire_time: Option<String>,
}

/// A protobuf JSON Duration: `"<seconds>[.<fraction>]s"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let n = s.trim().strip_suffix('s')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Duration::try_from_secs_f64(n.parse::<f64>().ok()?).ok()
}

/// The requested lifetime of an endpoint credential, validated: `Ok(None)` when none asked.
pub fn requested_lifetime(
    ttl: Option<&str>,
    expire_time: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<Duration>, String> {
    let (d, slack) = match (ttl, expire_time) {
        (Some(_), Some(_)) => return Err("set only one of ttl and expire_time".to_owned()),
        (None, None) => return Ok(None),
        (Some(t), None) => (
            parse_duration(t)
                .ok_or_else(|| format!("ttl '{t}' is not a duration such as \"3600s\""))?,
            Duration::ZERO,
        ),
        (None, Some(e)) => {
            let at = OffsetDateTime::parse(e, &Rfc3339)
                .map_err(|_| format!("expire_time '{e}' is not an RFC 3339 timestamp"))?;
            let d = Duration::try_from(at - now)
                .map_err(|_| "expire_time is in the past".to_owned())?;
            // A little slack for the time the request took to arrive.
            (d, Duration::from_secs(5))
        }
    };
    if d + slack < MIN_TTL || d > MAX_TTL + slack {
        return Err("the credential lifetime must be between 5 minutes and 1 hour".to_owned());
    }
    Ok(Some(d.min(MAX_TTL)))
}

/// `POST /api/2.0/postgres/credentials`.
pub async fn endpoint_credential(st: &State, id: &Identity, r: &Req) -> Resp {
    let b: EndpointCredentialBody = match r.json() {
        Ok(b) => b,
        Err(e) => return *e,
    };
    let Some(name) = b.endpoint.filter(|e| !e.is_empty()) else {
        return invalid("endpoint is required");
    };
    let now = OffsetDateTime::now_utc();
    let requested = match requested_lifetime(b.ttl.as_deref(), b.expire_time.as_deref(), now) {
        Ok(d) => d,
        Err(m) => return invalid(m),
    };
    let setting = {
        let g = st.lock();
        if !is_endpoint_name(&name) || !g.endpoints.contains_key(&name) {
            return not_found("Endpoint", &name);
        }
        g.lifetime
    };
    // The configured (or test-controlled) lifetime caps what the client asked for, so tests
    // can force short-lived credentials whatever ttl lakepool sends.
    let lifetime = requested.map_or(setting, |d| d.min(setting));
    let expires = (now + lifetime)
        .replace_nanosecond(0)
        .unwrap_or(now + lifetime);
    match mint(st, &id.user, expires).await {
        Ok(token) => json(
            StatusCode::OK,
            &json!({ "token": token, "expire_time": rfc3339_secs(st.reported(expires)) }),
        ),
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("300"), None);
        assert_eq!(parse_duration("-3s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5m"), None);
    }

    #[test]
    fn requested_lifetimes() {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(requested_lifetime(None, None, now), Ok(None));
        assert_eq!(
            requested_lifetime(Some("600s"), None, now),
            Ok(Some(Duration::from_secs(600)))
        );
        assert!(requested_lifetime(Some("299s"), None, now).is_err());
        assert!(requested_lifetime(Some("3601s"), None, now).is_err());
        assert!(requested_lifetime(Some("x"), None, now).is_err());
        assert_eq!(
            requested_lifetime(None, Some("2026-01-01T01:00:00Z"), now),
            Ok(Some(Duration::from_secs(3600)))
        );
        assert!(requested_lifetime(None, Some("2025-12-31T23:00:00Z"), now).is_err());
        assert!(requested_lifetime(None, Some("2026-01-01T02:00:00Z"), now).is_err());
        assert!(requested_lifetime(Some("600s"), Some("2026-01-01T00:30:00Z"), now).is_err());
    }
}
