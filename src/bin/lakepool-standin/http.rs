//! HTTP plumbing: routing, request parsing helpers, JSON responses, and the dispatch that
//! applies the test controls (outage, injected failures) and counters before the handlers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::control::control;
use crate::state::State;
use crate::{api, idp};

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

pub type Resp = Response<Full<Bytes>>;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Discovery,
    Token,
    Me,
    Instance(String),
    InstanceCredential,
    Endpoint(String),
    EndpointCredential,
    /// `/aad/auth`: the workspace's redirect to its Entra ID tenant.
    AadLogin,
    /// `/{tenant}/oauth2/token`: Entra ID.
    AadToken(String),
    /// `/metadata/identity/oauth2/token`: the Azure instance metadata service.
    Imds,
    /// `/metadata-service/…`: a Databricks metadata service.
    MetadataService,
    Control(Control),
    MethodNotAllowed,
    NotFound,
}

/// `/__standin/...` test controls (no auth, not counted, not subject to outage/failures).
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    Lifetime,
    Clock,
    Discovery,
    Fail,
    Outage,
    InstanceState,
    Revoke,
    Stats,
    NotFound,
}

const INSTANCES: &str = "/api/2.0/database/instances/";
const POSTGRES: &str = "/api/2.0/postgres/";

/// Routes a request by method and (undecoded) path.
pub fn route(method: &Method, path: &str) -> Route {
    let want = |m: Method, r: Route| {
        if *method == m {
            r
        } else {
            Route::MethodNotAllowed
        }
    };
    if let Some(rest) = path.strip_prefix("/__standin/") {
        return Route::Control(match (method.as_str(), rest) {
            ("POST", "lifetime") => Control::Lifetime,
            ("POST", "clock") => Control::Clock,
            ("POST", "discovery") => Control::Discovery,
            ("POST", "fail") => Control::Fail,
            ("POST", "outage") => Control::Outage,
            ("POST", "instance-state") => Control::InstanceState,
            ("POST", "revoke") => Control::Revoke,
            ("GET", "stats") => Control::Stats,
            _ => Control::NotFound,
        });
    }
    match path {
        "/oidc/.well-known/oauth-authorization-server" => want(Method::GET, Route::Discovery),
        "/oidc/v1/token" => want(Method::POST, Route::Token),
        "/api/2.0/preview/scim/v2/Me" => want(Method::GET, Route::Me),
        "/api/2.0/database/credentials" => want(Method::POST, Route::InstanceCredential),
        "/api/2.0/postgres/credentials" => want(Method::POST, Route::EndpointCredential),
        "/aad/auth" => want(Method::GET, Route::AadLogin),
        "/metadata/identity/oauth2/token" => want(Method::GET, Route::Imds),
        _ if path.starts_with("/metadata-service/") => want(Method::GET, Route::MetadataService),
        _ if aad_tenant(path).is_some() => want(
            Method::POST,
            Route::AadToken(aad_tenant(path).unwrap_or_default().to_owned()),
        ),
        _ => {
            if let Some(name) = path.strip_prefix(INSTANCES).filter(|n| !n.is_empty()) {
                want(Method::GET, Route::Instance(percent_decode(name, false)))
            } else if let Some(name) = path.strip_prefix(POSTGRES).filter(|n| !n.is_empty()) {
                want(Method::GET, Route::Endpoint(percent_decode(name, false)))
            } else {
                Route::NotFound
            }
        }
    }
}

/// The tenant of an Entra ID token path, `/{tenant}/oauth2/token`.
fn aad_tenant(path: &str) -> Option<&str> {
    let tenant = path.strip_prefix('/')?.strip_suffix("/oauth2/token")?;
    (!tenant.is_empty() && !tenant.contains('/')).then_some(tenant)
}

/// Percent-decoding; `plus` also turns `+` into a space (form encoding). Invalid escapes are
/// kept literally; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let hex = |x: u8| (x as char).to_digit(16);
        if c == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if plus && c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` pairs.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// First value of `key` in form pairs.
pub fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The `(user, password)` of an `Authorization: Basic` header.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// The token of an `Authorization: Bearer` header.
pub fn parse_bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let t = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !t.is_empty()).then_some(t)
}

/// A JSON response.
pub fn json(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A Databricks-style error: `{"error_code", "message"}`.
pub fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json(
        status,
        &json!({ "error_code": code, "message": message.into() }),
    )
}

/// The usual `error_code` for a status.
pub fn default_error_code(status: u16) -> &'static str {
    match status {
        400 => "INVALID_PARAMETER_VALUE",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "RESOURCE_DOES_NOT_EXIST",
        409 => "RESOURCE_CONFLICT",
        429 => "REQUEST_LIMIT_EXCEEDED",
        501 => "NOT_IMPLEMENTED",
        503 => "TEMPORARILY_UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL_ERROR",
    }
}

/// What a handler gets: the request parts it needs and the body.
pub struct Req {
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// A request header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (an empty body is `{}`).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Box<Resp>> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| {
            Box::new(api_error(
                StatusCode::BAD_REQUEST,
                "MALFORMED_REQUEST",
                format!("Could not parse request body: {e}"),
            ))
        })
    }
}

/// Handles one request.
pub async fn handle(st: &State, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers = req.headers().clone();
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "MALFORMED_REQUEST",
                format!("cannot read the request body: {e}"),
            );
        }
    };
    let r = Req {
        path,
        query,
        authorization,
        headers,
        body,
    };
    let route = route(&method, &r.path);
    let mut resp = match route {
        Route::Control(c) => control(st, c, &r),
        other => match pre_checks(st, &other, &r.path) {
            Some(resp) => resp,
            None => dispatch(st, other, &r).await,
        },
    };
    // The stand-in's own clock, skewed when a test asks (hyper adds none when one is set).
    let now = st.reported(time::OffsetDateTime::now_utc());
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now.into())) {
        resp.headers_mut().insert(DATE, v);
    }
    tracing::debug!(%method, path = %r.path, status = resp.status().as_u16(), "request");
    resp
}

/// Counts the request, then applies an outage or a pending injected failure.
fn pre_checks(st: &State, route: &Route, path: &str) -> Option<Resp> {
    let mut g = st.lock();
    g.stats.requests += 1;
    *g.stats.by_path.entry(path.to_owned()).or_default() += 1;
    match route {
        Route::Token | Route::AadToken(_) | Route::Imds | Route::MetadataService => {
            g.stats.token_requests += 1;
        }
        Route::InstanceCredential | Route::EndpointCredential => {
            g.stats.credential_requests += 1;
        }
        _ => {}
    }
    if g.outage {
        return Some(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            "The service is temporarily unavailable (stand-in outage).",
        ));
    }
    let rule = g.failures.take(path)?;
    drop(g);
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let code = rule
        .error_code
        .unwrap_or_else(|| default_error_code(rule.status).to_owned());
    let message = rule
        .message
        .unwrap_or_else(|| format!("Injected failure ({})", rule.status));
    let mut body = json!({ "error_code": code, "message": message });
    if path.starts_with("/oidc/") {
        // OAuth clients read these instead.
        body["error"] = json!(code.to_ascii_lowercase());
        body["error_description"] = json!(message);
    }
    let mut resp = json(status, &body);
    if let Some(s) = rule.retry_after {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    Some(resp)
}

async fn dispatch(st: &State, route: Route, r: &Req) -> Resp {
    match route {
        Route::Discovery => api::discovery(st),
        Route::Token => api::token(st, r),
        Route::AadLogin => idp::aad_login_redirect(st),
        Route::AadToken(tenant) => idp::aad_token(st, &tenant, r),
        Route::Imds => idp::imds_token(st, r),
        Route::MetadataService => idp::metadata_token(st, r),
        Route::NotFound => api_error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("No API found for '{}'", r.path),
        ),
        Route::MethodNotAllowed => api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_REQUEST",
            format!("Method not allowed for '{}'", r.path),
        ),
        Route::Control(_) => api_error(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", "control"),
        authed => {
            let bearer = r.authorization.as_deref().and_then(parse_bearer);
            let azure = bearer.and_then(|t| idp::aad_identity(st, t));
            if azure.is_some()
                && let Some(m) = r.header("x-databricks-azure-sp-management-token")
            {
                if !idp::management_token_ok(st, m) {
                    return api_error(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHENTICATED",
                        "Invalid X-Databricks-Azure-SP-Management-Token.",
                    );
                }
                st.lock().stats.management_tokens += 1;
            }
            let Some(id) = azure.or_else(|| bearer.and_then(|t| st.authenticate(t))) else {
                let msg = if r.authorization.is_some() {
                    "Invalid access token."
                } else {
                    "No access token: use Authorization: Bearer <token>."
                };
                return api_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", msg);
            };
            match authed {
                Route::Me => api::me(&id),
                Route::Instance(name) => api::instance(st, &name),
                Route::Endpoint(name) => api::endpoint(st, &name),
                Route::InstanceCredential => api::instance_credential(st, &id, r).await,
                Route::EndpointCredential => api::endpoint_credential(st, &id, r).await,
                _ => api_error(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", "not found"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(
            route(&g, "/oidc/.well-known/oauth-authorization-server"),
            Route::Discovery
        );
        assert_eq!(route(&p, "/oidc/v1/token"), Route::Token);
        assert_eq!(route(&g, "/oidc/v1/token"), Route::MethodNotAllowed);
        assert_eq!(route(&g, "/api/2.0/preview/scim/v2/Me"), Route::Me);
        assert_eq!(
            route(&g, "/api/2.0/database/instances/my-db"),
            Route::Instance("my-db".into())
        );
        assert_eq!(route(&g, "/api/2.0/database/instances/"), Route::NotFound);
        assert_eq!(
            route(&p, "/api/2.0/database/credentials"),
            Route::InstanceCredential
        );
        assert_eq!(
            route(&g, "/api/2.0/database/credentials"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            route(&g, "/api/2.0/postgres/projects/p/branches/b/endpoints/e"),
            Route::Endpoint("projects/p/branches/b/endpoints/e".into())
        );
        assert_eq!(
            route(
                &g,
                "/api/2.0/postgres/projects%2Fp%2Fbranches%2Fb%2Fendpoints%2Fe"
            ),
            Route::Endpoint("projects/p/branches/b/endpoints/e".into())
        );
        assert_eq!(
            route(&p, "/api/2.0/postgres/credentials"),
            Route::EndpointCredential
        );
        assert_eq!(route(&g, "/api/2.1/jobs/list"), Route::NotFound);
        assert_eq!(route(&g, "/aad/auth"), Route::AadLogin);
        assert_eq!(
            route(&p, "/tenant-1/oauth2/token"),
            Route::AadToken("tenant-1".into())
        );
        assert_eq!(route(&p, "/a/b/oauth2/token"), Route::NotFound);
        assert_eq!(route(&g, "/metadata/identity/oauth2/token"), Route::Imds);
        assert_eq!(route(&g, "/metadata-service/s1"), Route::MetadataService);
        assert_eq!(
            route(&p, "/__standin/discovery"),
            Route::Control(Control::Discovery)
        );
        assert_eq!(route(&p, "/__standin/fail"), Route::Control(Control::Fail));
        assert_eq!(
            route(&p, "/__standin/revoke"),
            Route::Control(Control::Revoke)
        );
        assert_eq!(
            route(&p, "/__standin/clock"),
            Route::Control(Control::Clock)
        );
        assert_eq!(
            route(&g, "/__standin/stats"),
            Route::Control(Control::Stats)
        );
        assert_eq!(
            route(&g, "/__standin/fail"),
            Route::Control(Control::NotFound)
        );
    }

    #[test]
    fn form_and_percent() {
        let f = parse_form(b"grant_type=client_credentials&scope=all-apis&client_id=a%2Bb&client_secret=x+y%3D&flag");
        assert_eq!(form_get(&f, "grant_type"), Some("client_credentials"));
        assert_eq!(form_get(&f, "scope"), Some("all-apis"));
        assert_eq!(form_get(&f, "client_id"), Some("a+b"));
        assert_eq!(form_get(&f, "client_secret"), Some("x y="));
        assert_eq!(form_get(&f, "flag"), Some(""));
        assert_eq!(form_get(&f, "missing"), None);
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("a+b%2f", false), "a+b/");
    }

    #[test]
    fn basic_and_bearer() {
        // "my-client:s3cr:et" (a secret may contain ':').
        assert_eq!(
            parse_basic("Basic bXktY2xpZW50OnMzY3I6ZXQ="),
            Some(("my-client".into(), "s3cr:et".into()))
        );
        assert_eq!(
            parse_basic("basic bXktY2xpZW50OnMzY3I6ZXQ"),
            Some(("my-client".into(), "s3cr:et".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic bm9jb2xvbg=="), None); // "nocolon"
        assert_eq!(parse_bearer("Bearer abc"), Some("abc"));
        assert_eq!(parse_bearer("bearer  abc "), Some("abc"));
        assert_eq!(parse_bearer("Bearer "), None);
        assert_eq!(parse_bearer("Basic abc"), None);
    }

    #[test]
    fn error_codes() {
        assert_eq!(default_error_code(503), "TEMPORARILY_UNAVAILABLE");
        assert_eq!(default_error_code(429), "REQUEST_LIMIT_EXCEEDED");
        assert_eq!(default_error_code(500), "INTERNAL_ERROR");
        assert_eq!(default_error_code(404), "RESOURCE_DOES_NOT_EXIST");
    }
}
