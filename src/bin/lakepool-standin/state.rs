//! What the stand-in knows: identities, issued access tokens, instances and endpoints, the
//! test controls (lifetime, injected failures, outage) and counters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::pg::Minter;

/// `--pat TOKEN=USERNAME`.
#[derive(Debug, Clone)]
pub struct PatSpec {
    pub token: String,
    pub user: String,
}

/// `--client ID:SECRET=USERNAME`.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub id: String,
    pub secret: String,
    pub user: String,
}

/// `--instance NAME=HOST[@STATE]` / `--endpoint NAME=HOST[@STATE]`.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub host: String,
    pub state: String,
}

pub fn parse_pat(s: &str) -> Result<PatSpec, String> {
    // The token may end in base64 padding, a user name never contains '='.
    match s.rsplit_once('=') {
        Some((t, u)) if !t.is_empty() && !u.is_empty() => Ok(PatSpec {
            token: t.to_owned(),
            user: u.to_owned(),
        }),
        _ => Err("expected TOKEN=USERNAME".to_owned()),
    }
}

pub fn parse_client(s: &str) -> Result<ClientSpec, String> {
    let err = || "expected ID:SECRET=USERNAME".to_owned();
    let (id, rest) = s.split_once(':').ok_or_else(err)?;
    let (secret, user) = rest.rsplit_once('=').ok_or_else(err)?;
    if id.is_empty() || secret.is_empty() || user.is_empty() {
        return Err(err());
    }
    Ok(ClientSpec {
        id: id.to_owned(),
        secret: secret.to_owned(),
        user: user.to_owned(),
    })
}

fn parse_named(s: &str, default_state: &str) -> Result<Named, String> {
    let err = || "expected NAME=HOST[@STATE]".to_owned();
    let (name, rest) = s.split_once('=').ok_or_else(err)?;
    let (host, state) = match rest.rsplit_once('@') {
        Some((h, st)) => (h, st),
        None => (rest, default_state),
    };
    if name.is_empty() || host.is_empty() || state.is_empty() {
        return Err(err());
    }
    Ok(Named {
        name: name.to_owned(),
        host: host.to_owned(),
        state: state.to_owned(),
    })
}

pub fn parse_instance(s: &str) -> Result<Named, String> {
    parse_named(s, "AVAILABLE")
}

pub fn parse_endpoint(s: &str) -> Result<Named, String> {
    let n = parse_named(s, "ACTIVE")?;
    if !is_endpoint_name(&n.name) {
        return Err("endpoint name must be projects/<p>/branches/<b>/endpoints/<e>".to_owned());
    }
    Ok(n)
}

/// `projects/<p>/branches/<b>/endpoints/<e>`.
pub fn is_endpoint_name(s: &str) -> bool {
    let p: Vec<&str> = s.split('/').collect();
    p.len() == 6
        && p[0] == "projects"
        && p[2] == "branches"
        && p[4] == "endpoints"
        && [p[1], p[3], p[5]].iter().all(|x| !x.is_empty())
}

/// RFC 3339 UTC with microseconds and `Z` (the instance credential's `expiration_time`).
pub fn rfc3339_frac(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap_or_default()
}

/// RFC 3339 UTC, whole seconds, `Z` (the endpoint credential's `expire_time`).
pub fn rfc3339_secs(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

/// A stable UUID-shaped id derived from a name (FNV-1a, twice).
pub fn stable_uuid(name: &str) -> String {
    let h = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (h(0xcbf2_9ce4_8422_2325), h(0x84222325_cbf29ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// A caller, as authenticated by a PAT or an OAuth access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Authenticated as an OAuth service principal.
    pub service_principal: bool,
}

/// One `/__standin/fail` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailRule {
    pub status: u16,
    pub remaining: u64,
    pub retry_after: Option<u64>,
    pub path_prefix: Option<String>,
    pub error_code: Option<String>,
    pub message: Option<String>,
}

/// Injected failures, consumed in the order added.
#[derive(Debug, Default)]
pub struct Failures {
    rules: Vec<FailRule>,
}

impl Failures {
    pub fn add(&mut self, rule: FailRule) {
        if rule.remaining > 0 {
            self.rules.push(rule);
        }
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The failure for a request to `path`, if one is pending; counts it down.
    pub fn take(&mut self, path: &str) -> Option<FailRule> {
        let i = self
            .rules
            .iter()
            .position(|r| r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p)))?;
        let r = &mut self.rules[i];
        r.remaining -= 1;
        let out = r.clone();
        if r.remaining == 0 {
            self.rules.remove(i);
        }
        Some(out)
    }

    pub fn pending(&self) -> u64 {
        self.rules.iter().map(|r| r.remaining).sum()
    }
}

/// Counters for `/__standin/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: u64,
    pub token_requests: u64,
    pub credential_requests: u64,
    /// API calls that carried a valid Azure management token.
    pub management_tokens: u64,
    pub by_path: BTreeMap<String, u64>,
}

/// A database instance or endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub state: String,
    pub uid: String,
}

/// Mutable state.
pub struct Inner {
    pub access_tokens: HashMap<String, (Identity, Instant)>,
    /// PATs and access tokens revoked by a test (`/__standin/revoke`): refused from then on.
    pub revoked: HashSet<String>,
    /// Entra ID tokens issued (client secret or managed identity).
    pub aad_tokens: HashMap<String, crate::idp::AadToken>,
    /// The `jti` (or `sub`) of every subject token exchanged, in order.
    pub exchanged: Vec<String>,
    /// The token endpoint discovery reports instead of the stand-in's own.
    pub discovery_token_endpoint: Option<String>,
    pub instances: BTreeMap<String, Target>,
    pub endpoints: BTreeMap<String, Target>,
    /// Database credential lifetime.
    pub lifetime: Duration,
    pub failures: Failures,
    pub outage: bool,
    /// Seconds the stand-in's reported clock (`Date` headers, credential expiry times) is
    /// ahead of the real one (negative: behind), to test lakepool against clock skew.
    pub skew_seconds: i64,
    pub stats: Stats,
}

/// Everything the handlers share.
pub struct State {
    /// `http://<listen addr>`.
    pub base: String,
    pats: HashMap<String, String>,
    clients: HashMap<String, (String, String)>,
    pub oauth_lifetime: Duration,
    /// Entra ID, managed identities, the metadata service, federation policies.
    pub idps: crate::idp::Idps,
    inner: Mutex<Inner>,
    pub minter: Minter,
}

impl State {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: String,
        pats: Vec<PatSpec>,
        clients: Vec<ClientSpec>,
        instances: Vec<Named>,
        endpoints: Vec<Named>,
        lifetime: u64,
        oauth_lifetime: u64,
        idps: crate::idp::Idps,
        minter: Minter,
    ) -> Self {
        let target = |n: Named| {
            let uid = stable_uuid(&n.name);
            (
                n.name,
                Target {
                    host: n.host,
                    state: n.state,
                    uid,
                },
            )
        };
        Self {
            base,
            pats: pats.into_iter().map(|p| (p.token, p.user)).collect(),
            clients: clients
                .into_iter()
                .map(|c| (c.id, (c.secret, c.user)))
                .collect(),
            oauth_lifetime: Duration::from_secs(oauth_lifetime),
            idps,
            inner: Mutex::new(Inner {
                access_tokens: HashMap::new(),
                revoked: HashSet::new(),
                aad_tokens: HashMap::new(),
                exchanged: Vec::new(),
                discovery_token_endpoint: None,
                instances: instances.into_iter().map(target).collect(),
                endpoints: endpoints.into_iter().map(target).collect(),
                lifetime: Duration::from_secs(lifetime),
                failures: Failures::default(),
                outage: false,
                skew_seconds: 0,
                stats: Stats::default(),
            }),
            minter,
        }
    }

    /// The time the stand-in reports (`Date`, expiry times): real time plus the skew.
    pub fn reported(&self, t: OffsetDateTime) -> OffsetDateTime {
        t + time::Duration::seconds(self.lock().skew_seconds)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service principal's application id, when `id`/`secret` match a configured client.
    pub fn client(&self, id: &str, secret: &str) -> Option<String> {
        self.clients
            .get(id)
            .filter(|(s, _)| s == secret)
            .map(|(_, u)| u.clone())
    }

    /// Revokes a PAT or an access token, as deleting a token in the workspace does: later
    /// calls with it get 401. Whether it was known.
    pub fn revoke(&self, token: &str) -> bool {
        let mut g = self.lock();
        let known = self.pats.contains_key(token) || g.access_tokens.remove(token).is_some();
        g.revoked.insert(token.to_owned());
        known
    }

    /// Issues a workspace OAuth access token for `user`.
    pub fn issue_access_token(&self, user: String) -> String {
        let token = random_token(48);
        let now = Instant::now();
        let mut g = self.lock();
        g.access_tokens.retain(|_, (_, exp)| *exp > now);
        g.access_tokens.insert(
            token.clone(),
            (
                Identity {
                    user,
                    service_principal: true,
                },
                now + self.oauth_lifetime,
            ),
        );
        token
    }

    /// The identity a bearer token authenticates, if any.
    pub fn authenticate(&self, bearer: &str) -> Option<Identity> {
        let g = self.lock();
        if g.revoked.contains(bearer) {
            return None;
        }
        if let Some(u) = self.pats.get(bearer) {
            return Some(Identity {
                user: u.clone(),
                service_principal: false,
            });
        }
        g.access_tokens
            .get(bearer)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn parses_specs() {
        let p = parse_pat("dapiXYZ==alice@example.com").unwrap();
        assert_eq!(
            (p.token.as_str(), p.user.as_str()),
            ("dapiXYZ=", "alice@example.com")
        );
        assert!(parse_pat("nouser").is_err());
        let c = parse_client("app-id:s3cr=t=4b9e-uuid").unwrap();
        assert_eq!(
            (c.id.as_str(), c.secret.as_str(), c.user.as_str()),
            ("app-id", "s3cr=t", "4b9e-uuid")
        );
        assert!(parse_client("id=user").is_err());
        let i = parse_instance("db1=127.0.0.1").unwrap();
        assert_eq!(
            (i.host.as_str(), i.state.as_str()),
            ("127.0.0.1", "AVAILABLE")
        );
        let i = parse_instance("db2=localhost@STOPPED").unwrap();
        assert_eq!(
            (i.host.as_str(), i.state.as_str()),
            ("localhost", "STOPPED")
        );
        let e = parse_endpoint("projects/p/branches/b/endpoints/e=127.0.0.1").unwrap();
        assert_eq!(e.state, "ACTIVE");
        assert!(parse_endpoint("projects/p/endpoints/e=127.0.0.1").is_err());
    }

    #[test]
    fn formats_rfc3339() {
        let t = datetime!(2026-03-04 05:06:07.123456789 UTC);
        assert_eq!(rfc3339_frac(t), "2026-03-04T05:06:07.123456Z");
        assert_eq!(rfc3339_secs(t), "2026-03-04T05:06:07Z");
        let t = datetime!(2026-03-04 07:06:07 +02:00);
        assert_eq!(rfc3339_frac(t), "2026-03-04T05:06:07.000000Z");
        // Both parse back as RFC 3339.
        let rfc = time::format_description::well_known::Rfc3339;
        assert!(OffsetDateTime::parse(&rfc3339_frac(t), &rfc).is_ok());
        assert!(OffsetDateTime::parse(&rfc3339_secs(t), &rfc).is_ok());
    }

    #[test]
    fn tokens_and_ids() {
        let a = random_token(120);
        assert_eq!(a.len(), 160);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, random_token(120));
        let u = stable_uuid("db1");
        assert_eq!(u.len(), 36);
        assert_eq!(u, stable_uuid("db1"));
        assert_ne!(u, stable_uuid("db2"));
    }

    fn state(pats: &[(&str, &str)]) -> State {
        let minter = Minter::new(crate::pg::PgTarget {
            host: "127.0.0.1".into(),
            port: 1,
            user: "postgres".into(),
            password: None,
            dbname: "postgres".into(),
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
        })
        .unwrap();
        let pats = pats
            .iter()
            .map(|(t, u)| PatSpec {
                token: (*t).to_owned(),
                user: (*u).to_owned(),
            })
            .collect();
        State::new(
            "http://127.0.0.1:1".into(),
            pats,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            3600,
            3600,
            crate::idp::Idps::default(),
            minter,
        )
    }

    #[test]
    fn each_token_is_its_own_identity_until_revoked() {
        let st = state(&[("dapi-a", "alice@x"), ("dapi-b", "bob@x")]);
        assert_eq!(st.authenticate("dapi-a").unwrap().user, "alice@x");
        assert_eq!(st.authenticate("dapi-b").unwrap().user, "bob@x");
        assert!(st.authenticate("dapi-c").is_none());
        let oauth = st.issue_access_token("carol@x".into());
        assert_eq!(st.authenticate(&oauth).unwrap().user, "carol@x");
        assert!(st.revoke("dapi-a"));
        assert!(st.revoke(&oauth));
        assert!(!st.revoke("dapi-never-issued"));
        assert!(st.authenticate("dapi-a").is_none());
        assert!(st.authenticate(&oauth).is_none());
        assert_eq!(st.authenticate("dapi-b").unwrap().user, "bob@x");
    }

    fn rule(count: u64, prefix: Option<&str>) -> FailRule {
        FailRule {
            status: 503,
            remaining: count,
            retry_after: None,
            path_prefix: prefix.map(str::to_owned),
            error_code: None,
            message: None,
        }
    }

    #[test]
    fn failures_count_down_per_prefix() {
        let mut f = Failures::default();
        f.add(rule(2, Some("/api/2.0/database/credentials")));
        f.add(rule(1, None));
        f.add(rule(0, None)); // ignored
        assert_eq!(f.pending(), 3);
        // A non-matching path takes the catch-all rule.
        assert!(f.take("/api/2.0/preview/scim/v2/Me").is_some());
        assert!(f.take("/api/2.0/preview/scim/v2/Me").is_none());
        assert_eq!(
            f.take("/api/2.0/database/credentials").unwrap().remaining,
            1
        );
        assert_eq!(
            f.take("/api/2.0/database/credentials").unwrap().remaining,
            0
        );
        assert!(f.take("/api/2.0/database/credentials").is_none());
        assert_eq!(f.pending(), 0);
        f.add(rule(5, None));
        f.clear();
        assert!(f.take("/x").is_none());
    }
}
