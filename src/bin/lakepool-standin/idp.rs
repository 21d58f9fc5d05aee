//! The identity providers a workspace trusts besides its own OAuth clients, as the real
//! services document them: Microsoft Entra ID's v1 token endpoint and the Azure instance
//! metadata service (for `azure-client-secret` and `azure-msi`), a Databricks metadata service
//! (`metadata-service`), and federation policies for RFC 8693 token exchange (`env-oidc`,
//! `file-oidc`). All of it on the stand-in's own loopback port; lakepool is pointed at it with
//! its endpoint overrides (`azure_login_endpoint`, `azure_msi_endpoint`,
//! `metadata_service_url`).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::http::{Req, Resp, form_get, json, parse_form};
use crate::state::{Identity, State, random_token};

/// Azure Databricks' application id: the `resource` of tokens for the workspace.
pub const DATABRICKS_RESOURCE: &str = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d";
/// Azure service management: the `resource` of the management token.
pub const MANAGEMENT_RESOURCE: &str = "https://management.core.windows.net/";
/// Lifetime of Entra ID and managed-identity tokens (Azure issues about an hour).
const AZURE_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// `--azure-sp CLIENT_ID:SECRET=USER`.
#[derive(Debug, Clone)]
pub struct AzureSp {
    pub client_id: String,
    pub secret: String,
    pub user: String,
}

/// `--azure-msi CLIENT_ID=USER`.
#[derive(Debug, Clone)]
pub struct AzureMsi {
    pub client_id: String,
    pub user: String,
}

/// `--federation issuer=…,subject=…,audience=…[,client_id=…],user=…`: a federation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    pub issuer: String,
    pub subject: String,
    pub audience: Option<String>,
    pub client_id: Option<String>,
    pub user: String,
}

pub fn parse_azure_sp(s: &str) -> Result<AzureSp, String> {
    let c = crate::state::parse_client(s).map_err(|_| "expected CLIENT_ID:SECRET=USER")?;
    Ok(AzureSp {
        client_id: c.id,
        secret: c.secret,
        user: c.user,
    })
}

pub fn parse_azure_msi(s: &str) -> Result<AzureMsi, String> {
    match s.split_once('=') {
        Some((id, user)) if !id.is_empty() && !user.is_empty() => Ok(AzureMsi {
            client_id: id.to_owned(),
            user: user.to_owned(),
        }),
        _ => Err("expected CLIENT_ID=USER".to_owned()),
    }
}

pub fn parse_federation(s: &str) -> Result<Federation, String> {
    let mut f = Federation {
        issuer: String::new(),
        subject: String::new(),
        audience: None,
        client_id: None,
        user: String::new(),
    };
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or("expected comma-separated key=value pairs")?;
        match k {
            "issuer" => f.issuer = v.to_owned(),
            "subject" => f.subject = v.to_owned(),
            "audience" => f.audience = Some(v.to_owned()),
            "client_id" => f.client_id = Some(v.to_owned()),
            "user" => f.user = v.to_owned(),
            other => return Err(format!("unknown key {other}")),
        }
    }
    if f.issuer.is_empty() || f.subject.is_empty() || f.user.is_empty() {
        return Err("issuer, subject and user are required".to_owned());
    }
    Ok(f)
}

/// What the identity providers know.
#[derive(Debug, Default)]
pub struct Idps {
    pub azure_tenant: Option<String>,
    pub azure_sps: Vec<AzureSp>,
    pub azure_msis: Vec<AzureMsi>,
    pub federation: Vec<Federation>,
    pub metadata_user: Option<String>,
}

/// An Entra ID token the stand-in issued.
#[derive(Debug, Clone)]
pub struct AadToken {
    pub identity: Identity,
    pub resource: String,
    pub expires: Instant,
}

/// Entra ID's v1 error shape; the description ends with trace ids as Azure's do.
fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Resp {
    json(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {} Correlation ID: {} Timestamp: 2026-01-01 00:00:00Z",
                random_token(8), random_token(8)
            ),
            "error_codes": [code],
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// Issues an Entra ID token for `resource`, in the v1 answer shape (numbers as strings).
fn issue_aad(st: &State, identity: Identity, resource: &str) -> Value {
    let token = random_token(48);
    let now = Instant::now();
    let epoch =
        time::OffsetDateTime::now_utc().unix_timestamp() + AZURE_TOKEN_LIFETIME.as_secs() as i64;
    let mut g = st.lock();
    g.aad_tokens.retain(|_, t| t.expires > now);
    g.aad_tokens.insert(
        token.clone(),
        AadToken {
            identity,
            resource: resource.to_owned(),
            expires: now + AZURE_TOKEN_LIFETIME,
        },
    );
    json!({
        "token_type": "Bearer",
        "expires_in": AZURE_TOKEN_LIFETIME.as_secs().to_string(),
        "ext_expires_in": AZURE_TOKEN_LIFETIME.as_secs().to_string(),
        "expires_on": epoch.to_string(),
        "not_before": (epoch - AZURE_TOKEN_LIFETIME.as_secs() as i64).to_string(),
        "resource": resource,
        "access_token": token,
    })
}

fn known_resource(r: &str) -> bool {
    r == DATABRICKS_RESOURCE || r == MANAGEMENT_RESOURCE
}

/// `POST /{tenant}/oauth2/token`: Entra ID v1 client credentials, id and secret in the form.
pub fn aad_token(st: &State, tenant: &str, r: &Req) -> Resp {
    let form = parse_form(&r.body);
    if st.idps.azure_tenant.as_deref() != Some(tenant) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    if form_get(&form, "grant_type") != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let id = form_get(&form, "client_id").unwrap_or_default();
    let Some(sp) = st.idps.azure_sps.iter().find(|s| s.client_id == id) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    if form_get(&form, "client_secret") != Some(sp.secret.as_str()) {
        tracing::info!("Entra ID token refused: wrong client secret for {id}");
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{id}'."
            ),
        );
    }
    let resource = form_get(&form, "resource").unwrap_or_default();
    if !known_resource(resource) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}."
            ),
        );
    }
    let identity = Identity {
        user: sp.user.clone(),
        service_principal: true,
    };
    tracing::info!("issued Entra ID token for {} ({resource})", sp.user);
    json(StatusCode::OK, &issue_aad(st, identity, resource))
}

/// `GET /aad/auth` on the workspace: the redirect to the tenant's login page that the SDKs
/// read the tenant id from.
pub fn aad_login_redirect(st: &State) -> Resp {
    let Some(tenant) = &st.idps.azure_tenant else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({"message": "not an Azure workspace"}),
        );
    };
    let mut r = json(StatusCode::FOUND, &json!({}));
    let location = format!(
        "{}/{tenant}/oauth2/authorize?response_type=code&client_id={DATABRICKS_RESOURCE}",
        st.base
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&location) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    r
}

/// `GET /metadata/identity/oauth2/token`: the Azure instance metadata service.
pub fn imds_token(st: &State, r: &Req) -> Resp {
    let bad = |d: &str| {
        json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": d}),
        )
    };
    if r.header("metadata") != Some("true") {
        return bad("Required metadata header not specified");
    }
    let query = parse_form(r.query.as_deref().unwrap_or_default().as_bytes());
    if form_get(&query, "api-version").is_none() {
        return bad("Required query variable 'api-version' is missing");
    }
    let resource = form_get(&query, "resource").unwrap_or_default();
    if !known_resource(resource) {
        return bad("Resource not found");
    }
    let msi = match form_get(&query, "client_id") {
        Some(id) => st.idps.azure_msis.iter().find(|m| m.client_id == id),
        // The system-assigned identity: the only one when just one is configured.
        None if st.idps.azure_msis.len() == 1 => st.idps.azure_msis.first(),
        None => None,
    };
    let Some(msi) = msi else {
        return bad("Identity not found");
    };
    let identity = Identity {
        user: msi.user.clone(),
        service_principal: true,
    };
    let mut v = issue_aad(st, identity, resource);
    v["client_id"] = json!(msi.client_id);
    tracing::info!(
        "issued managed identity token for {} ({resource})",
        msi.user
    );
    json(StatusCode::OK, &v)
}

/// `GET /metadata-service/…`: a Databricks metadata service for one identity.
pub fn metadata_token(st: &State, r: &Req) -> Resp {
    let bad = |m: &str| json(StatusCode::BAD_REQUEST, &json!({"message": m}));
    if r.header("x-databricks-metadata-version") != Some("1") {
        return bad("unsupported or missing X-Databricks-Metadata-Version");
    }
    if r.header("x-databricks-host") != Some(st.base.as_str()) {
        return bad("X-Databricks-Host does not match this metadata service's workspace");
    }
    let Some(user) = &st.idps.metadata_user else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({"message": "no metadata identity"}),
        );
    };
    let token = st.issue_access_token(user.clone());
    let expires_on =
        time::OffsetDateTime::now_utc().unix_timestamp() + st.oauth_lifetime.as_secs() as i64;
    tracing::info!("metadata service issued a token for {user}");
    json(
        StatusCode::OK,
        &json!({ "access_token": token, "token_type": "Bearer", "expires_on": expires_on }),
    )
}

/// The claims of a JWT (payload only: the stand-in does not verify signatures; the real
/// workspace checks them against the issuer's published keys).
fn claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` at `/oidc/v1/token`: a
/// federation policy maps the subject token's issuer, subject and audience to an identity.
/// Returns the identity or an OAuth error answer.
pub fn token_exchange(st: &State, form: &[(String, String)]) -> Result<String, Box<Resp>> {
    let refuse = |status: StatusCode, error: &str, d: &str| {
        tracing::info!("token exchange refused: {d}");
        Box::new(json(
            status,
            &json!({ "error": error, "error_description": d }),
        ))
    };
    if form_get(form, "subject_token_type") != Some("urn:ietf:params:oauth:token-type:jwt") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token_type must be urn:ietf:params:oauth:token-type:jwt",
        ));
    }
    let Some(c) = form_get(form, "subject_token").and_then(claims) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token is not a JWT",
        ));
    };
    let client_id = form_get(form, "client_id").filter(|c| !c.is_empty());
    let text = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (iss, sub) = (text("iss"), text("sub"));
    let auds: Vec<String> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let exp = c.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= time::OffsetDateTime::now_utc().unix_timestamp() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the subject token has expired",
        ));
    }
    let default_audience = format!("{}/oidc/v1/token", st.base);
    let policy = st.idps.federation.iter().find(|f| {
        f.client_id.as_deref() == client_id
            && f.issuer == iss
            && f.subject == sub
            && auds.contains(f.audience.as_ref().unwrap_or(&default_audience))
    });
    let Some(policy) = policy else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            &format!(
                "no federation policy{} matches issuer '{iss}', subject '{sub}' and audience {auds:?}",
                client_id
                    .map(|c| format!(" of service principal {c}"))
                    .unwrap_or_default()
            ),
        ));
    };
    let jti = text("jti");
    st.lock()
        .exchanged
        .push(if jti.is_empty() { sub } else { jti });
    Ok(policy.user.clone())
}

/// Whether a management token matches the caller (`X-Databricks-Azure-SP-Management-Token`).
pub fn management_token_ok(st: &State, token: &str) -> bool {
    let g = st.lock();
    g.aad_tokens
        .get(token)
        .is_some_and(|t| t.resource == MANAGEMENT_RESOURCE && t.expires > Instant::now())
}

/// The identity of an Entra ID token for the workspace.
pub fn aad_identity(st: &State, token: &str) -> Option<Identity> {
    let g = st.lock();
    g.aad_tokens
        .get(token)
        .filter(|t| t.resource == DATABRICKS_RESOURCE && t.expires > Instant::now())
        .map(|t| t.identity.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_federation_policies() {
        let f = parse_federation(
            "issuer=https://k8s.example,subject=system:serviceaccount:ns:app,client_id=sp-1,user=sp-1",
        )
        .unwrap();
        assert_eq!(f.issuer, "https://k8s.example");
        assert_eq!(f.subject, "system:serviceaccount:ns:app");
        assert_eq!(f.client_id.as_deref(), Some("sp-1"));
        assert!(f.audience.is_none());
        assert!(parse_federation("issuer=x").is_err());
        assert!(parse_federation("issuer=x,subject=y,user=z,colour=blue").is_err());
    }

    #[test]
    fn reads_jwt_claims_without_verifying() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"i","sub":"s","aud":["a"],"exp":1}"#);
        let c = claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(c["sub"], "s");
        assert!(claims("not-a-jwt").is_none());
    }
}
