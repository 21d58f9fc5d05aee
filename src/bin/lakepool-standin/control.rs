//! `/__standin/...` test controls: lifetimes, the reported clock, discovery, injected
//! failures, outages, instance states, token revocation and counters.

use hyper::StatusCode;
use serde_json::json;

use crate::http::{Control, Req, Resp, api_error, json};
use crate::state::State;

#[derive(serde::Deserialize)]
struct LifetimeBody {
    seconds: u64,
}

#[derive(serde::Deserialize)]
struct DiscoveryBody {
    /// The token endpoint to report (None: the stand-in's own).
    token_endpoint: Option<String>,
}

#[derive(serde::Deserialize)]
struct ClockBody {
    skew_seconds: i64,
}

#[derive(serde::Deserialize)]
struct FailBody {
    #[serde(default)]
    clear: bool,
    status: Option<u16>,
    count: Option<u64>,
    retry_after: Option<u64>,
    path_prefix: Option<String>,
    error_code: Option<String>,
    message: Option<String>,
}

#[derive(serde::Deserialize)]
struct OutageBody {
    on: bool,
}

#[derive(serde::Deserialize)]
struct RevokeBody {
    token: String,
}

#[derive(serde::Deserialize)]
struct StateBody {
    name: String,
    state: String,
}

fn bad(m: &str) -> Resp {
    api_error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", m)
}

/// Runs one control request.
pub fn control(st: &State, c: Control, r: &Req) -> Resp {
    let result = match c {
        Control::Lifetime => r.json().map(|b| lifetime(st, b)),
        Control::Discovery => r.json().map(|b| discovery(st, b)),
        Control::Clock => r.json().map(|b| clock(st, b)),
        Control::Fail => r.json().map(|b| fail(st, b)),
        Control::Outage => r.json().map(|b: OutageBody| {
            st.lock().outage = b.on;
            tracing::info!(on = b.on, "outage");
            json(StatusCode::OK, &json!({ "on": b.on }))
        }),
        Control::InstanceState => r.json().map(|b| instance_state(st, b)),
        Control::Revoke => r.json().map(|b: RevokeBody| {
            let known = st.revoke(&b.token);
            // Never the token itself: tests look for tokens in every log.
            tracing::info!(known, "token revoked");
            json(StatusCode::OK, &json!({ "known": known }))
        }),
        Control::Stats => Ok(stats(st)),
        Control::NotFound => Ok(api_error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no control endpoint '{}'", r.path),
        )),
    };
    result.unwrap_or_else(|e| *e)
}

fn lifetime(st: &State, b: LifetimeBody) -> Resp {
    if b.seconds == 0 {
        return bad("seconds must be at least 1");
    }
    st.lock().lifetime = std::time::Duration::from_secs(b.seconds);
    tracing::info!(seconds = b.seconds, "database credential lifetime set");
    json(StatusCode::OK, &json!({ "seconds": b.seconds }))
}

fn discovery(st: &State, b: DiscoveryBody) -> Resp {
    st.lock().discovery_token_endpoint = b.token_endpoint.clone();
    tracing::info!(token_endpoint = ?b.token_endpoint, "discovery document changed");
    json(
        StatusCode::OK,
        &json!({ "token_endpoint": b.token_endpoint }),
    )
}

fn clock(st: &State, b: ClockBody) -> Resp {
    if b.skew_seconds.unsigned_abs() > 10 * 365 * 86_400 {
        return bad("skew_seconds must be within ten years");
    }
    st.lock().skew_seconds = b.skew_seconds;
    tracing::info!(skew_seconds = b.skew_seconds, "reported clock skewed");
    json(StatusCode::OK, &json!({ "skew_seconds": b.skew_seconds }))
}

fn fail(st: &State, b: FailBody) -> Resp {
    let mut g = st.lock();
    if b.clear {
        g.failures.clear();
    }
    if let Some(status) = b.status {
        if !(400..=599).contains(&status) {
            return bad("status must be 400..599");
        }
        g.failures.add(crate::state::FailRule {
            status,
            remaining: b.count.unwrap_or(1),
            retry_after: b.retry_after,
            path_prefix: b.path_prefix.filter(|p| !p.is_empty()),
            error_code: b.error_code,
            message: b.message,
        });
    } else if !b.clear {
        return bad("status is required (or clear: true)");
    }
    let pending = g.failures.pending();
    tracing::info!(pending, "failure injection updated");
    json(StatusCode::OK, &json!({ "pending": pending }))
}

fn instance_state(st: &State, b: StateBody) -> Resp {
    let mut g = st.lock();
    let g = &mut *g;
    let target = g
        .instances
        .get_mut(&b.name)
        .or_else(|| g.endpoints.get_mut(&b.name));
    match target {
        Some(t) => {
            t.state.clone_from(&b.state);
            tracing::info!(name = %b.name, state = %b.state, "state changed");
            json(StatusCode::OK, &json!({ "name": b.name, "state": b.state }))
        }
        None => api_error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("no instance or endpoint named '{}'", b.name),
        ),
    }
}

fn stats(st: &State) -> Resp {
    let g = st.lock();
    json(
        StatusCode::OK,
        &json!({
            "credentials_minted": st.minter.minted(),
            "credential_requests": g.stats.credential_requests,
            "token_requests": g.stats.token_requests,
            "management_tokens": g.stats.management_tokens,
            "exchanged": g.exchanged,
            "requests": g.stats.requests,
            "by_path": g.stats.by_path,
            "pending_failures": g.failures.pending(),
            "outage": g.outage,
            "lifetime_seconds": g.lifetime.as_secs(),
            "tokens": st.minter.recent_tokens().into_iter()
                .chain(g.access_tokens.keys().cloned())
                .chain(g.aad_tokens.keys().cloned())
                .collect::<Vec<_>>(),
        }),
    )
}
