//! Configuration: a TOML file (every table refuses unknown keys), flags and
//! environment variables, resolved into [`Settings`] with every value
//! checked and defaulted. Precedence: flag or environment, then the file,
//! then the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = "./lanyard-data";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_QUIC_LISTEN: &str = "0.0.0.0:4433";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad value for {field}: {message}")]
    Value {
        field: &'static str,
        message: String,
    },
}

fn value_err(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        field,
        message: message.into(),
    }
}

/// The config file, as written. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub api_listen: Option<String>,
    pub quic_listen: Option<String>,
    /// A plain-HTTP listener serving only `GET /metrics`, without a token,
    /// for a Prometheus on the same host (e.g. "127.0.0.1:9464"); off when
    /// absent.
    pub metrics_listen: Option<String>,
    /// The `host:port` laptops use to reach this node's QUIC listener (put in
    /// enrolment codes): one string, or a list of them (the first is this
    /// node's own; the others, e.g. a load balancer's, are handed out too).
    pub public_addr: Option<PublicAddr>,
    /// Extra DNS names or addresses for the broker's server certificate.
    #[serde(default)]
    pub server_names: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub grace_period: Option<String>,
    /// This node's name among several sharing one PostgreSQL.
    pub node: Option<String>,
    #[serde(default)]
    pub tokens: TokensConfig,
    #[serde(default)]
    pub enrolment: EnrolmentConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub admission: AdmissionConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Sign-in with the organisation's OpenID provider; absent: no SSO.
    pub oidc: Option<OidcConfig>,
    /// What is logged, as in `LANYARD_LOG` (which wins when set), e.g.
    /// "info" or "info,lanyard_broker::quic=debug"; SIGHUP applies a change.
    pub log_level: Option<String>,
}

/// `[oidc]`: the organisation's OpenID provider, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Discovery at ISSUER/.well-known/openid-configuration; https (plain
    /// http only for a loopback issuer).
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// Absent: a public client (PKCE alone).
    pub client_secret_file: Option<PathBuf>,
    /// The claim that lists the person's groups ("groups", or "roles").
    pub groups_claim: Option<String>,
    /// The claim that names the person ("preferred_username" or "email").
    pub username_claim: Option<String>,
    /// Create a person at their first sign-in (priority 3) when a mapped
    /// group matches.
    pub provision: Option<bool>,
    /// The agents' loopback ports for the redirect, in the order tried.
    pub redirect_ports: Option<Vec<u16>>,
    /// How often a refresh asks the provider again whether the person may
    /// still sign in.
    pub recheck_every: Option<String>,
    /// Scopes asked for besides "openid".
    pub scopes: Option<Vec<String>>,
    /// The web console's redirect URL as registered at the provider,
    /// `https://HOST[:PORT]/login/sso/callback`; absent: the console's
    /// sign-in page offers no provider button.
    pub console_redirect_url: Option<String>,
}

/// `[oidc]`, checked.
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    /// Read from `client_secret_file` at start.
    pub client_secret: Option<String>,
    pub groups_claim: String,
    pub username_claim: String,
    pub provision: bool,
    pub redirect_ports: Vec<u16>,
    pub recheck_every: Duration,
    pub scopes: Vec<String>,
    pub console_redirect_url: Option<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("groups_claim", &self.groups_claim)
            .field("username_claim", &self.username_claim)
            .field("provision", &self.provision)
            .field("redirect_ports", &self.redirect_ports)
            .field("recheck_every", &self.recheck_every)
            .field("console_redirect_url", &self.console_redirect_url)
            .finish_non_exhaustive()
    }
}

/// A claim name: ASCII letters, digits, `_`, `-`, `.`, `:`, `/`, at most 128.
fn claim_name(
    field: &'static str,
    v: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let v = v.unwrap_or_else(|| default.to_owned());
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b));
    if ok {
        Ok(v)
    } else {
        Err(value_err(field, format!("{v:?} is not a claim name")))
    }
}

impl OidcConfig {
    fn resolve(self) -> Result<OidcSettings, ConfigError> {
        let issuer = self
            .issuer
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| value_err("oidc.issuer", "is required in [oidc]"))?;
        let issuer = issuer.trim().trim_end_matches('/').to_owned();
        let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
            .iter()
            .any(|p| issuer.starts_with(p));
        if !(issuer.starts_with("https://") || loopback) || issuer.len() > 512 {
            return Err(value_err(
                "oidc.issuer",
                format!("{issuer:?} must be an https:// URL (plain http only on 127.0.0.1)"),
            ));
        }
        let client_id = self
            .client_id
            .filter(|s| !s.trim().is_empty() && s.len() <= 256)
            .ok_or_else(|| value_err("oidc.client_id", "is required in [oidc]"))?;
        let client_secret = match self.client_secret_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    value_err(
                        "oidc.client_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let secret = text.trim().to_owned();
                if secret.is_empty() {
                    return Err(value_err(
                        "oidc.client_secret_file",
                        format!("{} is empty", path.display()),
                    ));
                }
                Some(secret)
            }
        };
        let redirect_ports = self
            .redirect_ports
            .unwrap_or_else(|| vec![53682, 53683, 53684]);
        if redirect_ports.is_empty() || redirect_ports.len() > 16 || redirect_ports.contains(&0) {
            return Err(value_err(
                "oidc.redirect_ports",
                "needs 1 to 16 ports, none of them 0",
            ));
        }
        let recheck_every = duration(
            "oidc.recheck_every",
            self.recheck_every.as_deref(),
            Duration::from_secs(3600),
        )?;
        if recheck_every < Duration::from_secs(1) || recheck_every > Duration::from_secs(24 * 3600)
        {
            return Err(value_err(
                "oidc.recheck_every",
                "must be between 1s and 24h",
            ));
        }
        let scopes = self.scopes.unwrap_or_else(|| {
            ["profile", "email", "offline_access"]
                .map(str::to_owned)
                .to_vec()
        });
        for s in &scopes {
            if s.is_empty()
                || s.len() > 128
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return Err(value_err("oidc.scopes", format!("{s:?} is not a scope")));
            }
        }
        let console_redirect_url = match self.console_redirect_url {
            None => None,
            Some(u) => {
                let u = u.trim().to_owned();
                let loopback =
                    u.starts_with("http://127.0.0.1:") || u.starts_with("http://localhost:");
                if !(u.starts_with("https://") || loopback)
                    || !u.ends_with("/login/sso/callback")
                    || u.len() > 512
                    || u.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(value_err(
                        "oidc.console_redirect_url",
                        "must be https://HOST[:PORT]/login/sso/callback (the console's address as the provider knows it)",
                    ));
                }
                Some(u)
            }
        };
        Ok(OidcSettings {
            console_redirect_url,
            issuer,
            client_id,
            client_secret,
            groups_claim: claim_name("oidc.groups_claim", self.groups_claim, "groups")?,
            username_claim: claim_name(
                "oidc.username_claim",
                self.username_claim,
                "preferred_username",
            )?,
            provision: self.provision.unwrap_or(false),
            redirect_ports,
            recheck_every,
            scopes,
        })
    }
}

/// The broker's own server certificate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Life of the server certificate the broker's CA issues; it is
    /// re-issued at half its life (default 90d; 2s to 397d).
    pub server_cert_ttl: Option<String>,
}

/// `public_addr` as written: one address or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PublicAddr {
    One(String),
    Many(Vec<String>),
}

impl PublicAddr {
    fn into_vec(self) -> Vec<String> {
        match self {
            PublicAddr::One(a) => vec![a],
            PublicAddr::Many(v) => v,
        }
    }
}

/// Organisation-wide access rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A council laptop works only for the person it is allocated to (or
    /// any member of its pool group). Default true; false for councils that
    /// do not track holders.
    pub managed_requires_allocation: Option<bool>,
    /// How long the rules may go unconfirmed against the store (it cannot
    /// be read) before every session and stream fails closed (default 60s).
    pub rules_max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the chain head is signed and written outside the database
    /// (default 60s).
    pub checkpoint_interval: Option<String>,
    /// Where the signed checkpoints go (default DATA_DIR/audit-checkpoints.log);
    /// best on another disk or a file shipped off the host.
    pub checkpoint_file: Option<PathBuf>,
}

/// Who is let in when the broker is busy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Agent sessions this node is sized for (default: limits.agents).
    pub capacity: Option<usize>,
    /// From this percentage of capacity, only priority 1 and 2 staff are
    /// let in (default 80).
    pub only_priority_1_2_at: Option<u8>,
    /// From this percentage, only priority 1 staff (default 90).
    pub only_priority_1_at: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    /// Lifetime of an agent's access token (default 15m).
    pub access_ttl: Option<String>,
    /// Lifetime of a refresh token (default 12h).
    pub refresh_ttl: Option<String>,
    /// Lifetime of an API token from `lanyard login` (default 12h).
    pub api_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentConfig {
    /// Default lifetime of an enrolment code (default 24h).
    pub code_ttl: Option<String>,
    /// The longest lifetime an admin may ask for (default 7d).
    pub max_code_ttl: Option<String>,
    /// Lifetime of a device certificate, 10s to 90d; agents renew it at
    /// half its life (default 7d).
    pub device_cert_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent HTTPS connections to the admin API (default 512).
    pub http_connections: Option<usize>,
    /// Concurrent HTTPS connections from one source address (default 64):
    /// one host cannot take every connection slot.
    pub http_connections_per_address: Option<usize>,
    /// Time allowed for one API request, body included, and for a response
    /// write the client does not read (default 30s).
    pub http_request_timeout: Option<String>,
    /// Largest request body, in bytes (default 8 MiB, for CSV imports).
    pub http_body_bytes: Option<usize>,
    /// Concurrent agent (QUIC) connections (default 10000).
    pub agents: Option<usize>,
    /// Concurrent tunnel streams per agent connection (default 256).
    pub streams_per_agent: Option<u32>,
    /// An agent connection with no packet from the agent for this long is
    /// closed (default 30s; agents send a keepalive every 5 s).
    pub quic_idle_timeout: Option<String>,
}

/// Everything the broker needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// `None`: SQLite in the data dir.
    pub database_url: Option<String>,
    pub api_listen: SocketAddr,
    pub quic_listen: SocketAddr,
    /// The plain-HTTP `/metrics` listener, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// This node's public QUIC addresses, its own first; empty: derived
    /// from the QUIC listener.
    pub public_addrs: Vec<String>,
    pub server_names: Vec<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub grace_period: Duration,
    /// `None`: HOSTNAME:QUIC_PORT.
    pub node: Option<String>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub api_token_ttl: Duration,
    pub code_ttl: Duration,
    pub max_code_ttl: Duration,
    pub http_connections: usize,
    pub http_connections_per_address: usize,
    pub http_request_timeout: Duration,
    pub http_body_bytes: usize,
    pub device_cert_ttl: Duration,
    pub max_agents: usize,
    pub streams_per_agent: u32,
    pub quic_idle_timeout: Duration,
    pub admission: crate::policy::Admission,
    /// A council laptop works only for its holder (or its pool group).
    pub managed_requires_allocation: bool,
    /// Rules unconfirmed this long fail closed.
    pub rules_max_age: Duration,
    /// How often the audit chain's head is signed into the checkpoint file.
    pub checkpoint_interval: Duration,
    /// `None`: DATA_DIR/audit-checkpoints.log.
    pub checkpoint_file: Option<PathBuf>,
    /// Life of the CA-issued server certificate (renewed at half of it).
    pub server_cert_ttl: Duration,
    /// The file's `log_level`, checked.
    pub log_level: Option<String>,
    /// `[oidc]`, when present.
    pub oidc: Option<OidcSettings>,
}

/// Values from flags and the environment (clap fills these).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub api_listen: Option<String>,
    pub quic_listen: Option<String>,
    /// Replace the file's `public_addr` when not empty.
    pub public_addrs: Vec<String>,
    pub server_names: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub grace_period: Option<String>,
    pub node: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
    }
}

fn duration(
    field: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            value_err(
                field,
                format!("{s:?} is not a duration like 30s, 15m or 12h ({e})"),
            )
        }),
    }
}

fn addr(
    field: &'static str,
    value: Option<&str>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let s = value.unwrap_or(default).trim();
    s.parse().map_err(|_| {
        value_err(
            field,
            format!("{s:?} is not an address like 127.0.0.1:8443 (port 0 picks a free port)"),
        )
    })
}

impl Settings {
    /// Resolves flags over the file over defaults, checking every value.
    pub fn resolve(over: Overrides, file: FileConfig) -> Result<Self, ConfigError> {
        let database_url = over
            .database_url
            .or(file.database_url)
            .filter(|u| !u.trim().is_empty());
        if let Some(url) = &database_url {
            let ok = ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| url.starts_with(p));
            if !ok {
                return Err(value_err(
                    "database_url",
                    format!(
                        "{} is not a sqlite:// or postgres:// URL",
                        crate::store::redact_url(url)
                    ),
                ));
            }
        }
        let mut public_addrs = if over.public_addrs.is_empty() {
            file.public_addr
                .map(PublicAddr::into_vec)
                .unwrap_or_default()
        } else {
            over.public_addrs
        };
        for p in &public_addrs {
            if !lanyard_proto::enrol::valid_host_port(p) {
                return Err(value_err("public_addr", format!("{p:?} is not HOST:PORT")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        public_addrs.retain(|a| seen.insert(a.clone()));
        if public_addrs.len() > lanyard_proto::enrol::MAX_ADDRESSES {
            return Err(value_err(
                "public_addr",
                format!(
                    "at most {} addresses (an enrolment code carries no more)",
                    lanyard_proto::enrol::MAX_ADDRESSES
                ),
            ));
        }
        let mut server_names = file.server_names;
        server_names.extend(over.server_names);
        for n in &server_names {
            if n.is_empty() || n.contains(char::is_whitespace) {
                return Err(value_err(
                    "server_names",
                    format!("{n:?} is not a DNS name or address"),
                ));
            }
        }
        let tls = match (
            over.tls_cert.or(file.tls_cert),
            over.tls_key.or(file.tls_key),
        ) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((c, k)),
            _ => {
                return Err(value_err(
                    "tls_cert",
                    "give both tls_cert and tls_key, or neither",
                ))
            }
        };
        let limits = file.limits;
        let http_connections = limits.http_connections.unwrap_or(512);
        let http_connections_per_address = limits.http_connections_per_address.unwrap_or(64);
        if http_connections_per_address == 0 {
            return Err(value_err(
                "limits.http_connections_per_address",
                "must be at least 1",
            ));
        }
        if http_connections == 0 {
            return Err(value_err("limits.http_connections", "must be at least 1"));
        }
        let http_body_bytes = limits.http_body_bytes.unwrap_or(8 * 1024 * 1024);
        if !(1024..=256 * 1024 * 1024).contains(&http_body_bytes) {
            return Err(value_err(
                "limits.http_body_bytes",
                "must be between 1024 and 268435456",
            ));
        }
        let node = over.node.or(file.node);
        if let Some(n) = &node {
            let fine = |c: char| c.is_ascii_alphanumeric() || ".-_:".contains(c);
            if n.is_empty() || n.len() > 64 || !n.chars().all(fine) {
                return Err(value_err(
                    "node",
                    format!("{n:?}: use 1 to 64 letters, digits, '.', '-', '_' or ':'"),
                ));
            }
        }
        let rules_max_age = duration(
            "policy.rules_max_age",
            file.policy.rules_max_age.as_deref(),
            Duration::from_secs(60),
        )?;
        if !(Duration::from_secs(5)..=Duration::from_secs(3600)).contains(&rules_max_age) {
            return Err(value_err(
                "policy.rules_max_age",
                "must be between 5s and 1h",
            ));
        }
        let checkpoint_interval = duration(
            "audit.checkpoint_interval",
            file.audit.checkpoint_interval.as_deref(),
            Duration::from_secs(60),
        )?;
        if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&checkpoint_interval)
        {
            return Err(value_err(
                "audit.checkpoint_interval",
                "must be between 1s and 24h",
            ));
        }
        let server_cert_ttl = duration(
            "tls.server_cert_ttl",
            file.tls.server_cert_ttl.as_deref(),
            Duration::from_secs(90 * 24 * 3600),
        )?;
        if !(Duration::from_secs(2)..=Duration::from_secs(397 * 24 * 3600))
            .contains(&server_cert_ttl)
        {
            return Err(value_err(
                "tls.server_cert_ttl",
                "must be between 2s and 397d",
            ));
        }
        let log_level = file.log_level.map(|l| l.trim().to_owned());
        if let Some(l) = &log_level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(l) {
                return Err(value_err(
                    "log_level",
                    format!(
                        "{l:?} is not a level like \"info\" or \"info,lanyard_broker=debug\" ({e})"
                    ),
                ));
            }
        }
        let oidc = file.oidc.map(OidcConfig::resolve).transpose()?;
        let settings = Settings {
            server_cert_ttl,
            log_level,
            oidc,
            node,
            data_dir: over
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            database_url,
            api_listen: addr(
                "api_listen",
                over.api_listen.as_deref().or(file.api_listen.as_deref()),
                DEFAULT_API_LISTEN,
            )?,
            quic_listen: addr(
                "quic_listen",
                over.quic_listen.as_deref().or(file.quic_listen.as_deref()),
                DEFAULT_QUIC_LISTEN,
            )?,
            metrics_listen: file
                .metrics_listen
                .as_deref()
                .map(|a| addr("metrics_listen", Some(a), ""))
                .transpose()?,
            public_addrs,
            server_names,
            tls,
            grace_period: duration(
                "grace_period",
                over.grace_period
                    .as_deref()
                    .or(file.grace_period.as_deref()),
                Duration::from_secs(30),
            )?,
            access_ttl: duration(
                "tokens.access_ttl",
                file.tokens.access_ttl.as_deref(),
                Duration::from_secs(15 * 60),
            )?,
            refresh_ttl: duration(
                "tokens.refresh_ttl",
                file.tokens.refresh_ttl.as_deref(),
                Duration::from_secs(12 * 3600),
            )?,
            api_token_ttl: duration(
                "tokens.api_ttl",
                file.tokens.api_ttl.as_deref(),
                Duration::from_secs(12 * 3600),
            )?,
            code_ttl: duration(
                "enrolment.code_ttl",
                file.enrolment.code_ttl.as_deref(),
                Duration::from_secs(24 * 3600),
            )?,
            max_code_ttl: duration(
                "enrolment.max_code_ttl",
                file.enrolment.max_code_ttl.as_deref(),
                Duration::from_secs(7 * 24 * 3600),
            )?,
            http_connections,
            http_connections_per_address,
            http_request_timeout: duration(
                "limits.http_request_timeout",
                limits.http_request_timeout.as_deref(),
                Duration::from_secs(30),
            )?,
            http_body_bytes,
            device_cert_ttl: duration(
                "enrolment.device_cert_ttl",
                file.enrolment.device_cert_ttl.as_deref(),
                Duration::from_secs(7 * 24 * 3600),
            )?,
            max_agents: limits.agents.unwrap_or(10_000),
            streams_per_agent: limits.streams_per_agent.unwrap_or(256),
            quic_idle_timeout: duration(
                "limits.quic_idle_timeout",
                limits.quic_idle_timeout.as_deref(),
                Duration::from_secs(30),
            )?,
            managed_requires_allocation: file.policy.managed_requires_allocation.unwrap_or(true),
            rules_max_age,
            checkpoint_interval,
            checkpoint_file: file.audit.checkpoint_file,
            admission: crate::policy::Admission {
                capacity: file.admission.capacity.or(limits.agents).unwrap_or(10_000),
                only_priority_1_2_at: file.admission.only_priority_1_2_at.unwrap_or(80),
                only_priority_1_at: file.admission.only_priority_1_at.unwrap_or(90),
            },
        };
        let a = &settings.admission;
        if a.capacity == 0 {
            return Err(value_err("admission.capacity", "must be at least 1"));
        }
        if !(1..=100).contains(&a.only_priority_1_at)
            || !(1..=a.only_priority_1_at).contains(&a.only_priority_1_2_at)
        {
            return Err(value_err(
                "admission",
                "need 1 <= only_priority_1_2_at <= only_priority_1_at <= 100 (percent of capacity)",
            ));
        }
        if settings.device_cert_ttl < Duration::from_secs(10)
            || settings.device_cert_ttl > Duration::from_secs(90 * 24 * 3600)
        {
            return Err(value_err(
                "enrolment.device_cert_ttl",
                "must be between 10s and 90d",
            ));
        }
        if !(1..=1_000_000).contains(&settings.max_agents) {
            return Err(value_err("limits.agents", "must be between 1 and 1000000"));
        }
        if !(1..=10_000).contains(&settings.streams_per_agent) {
            return Err(value_err(
                "limits.streams_per_agent",
                "must be between 1 and 10000",
            ));
        }
        if settings.quic_idle_timeout < Duration::from_secs(6)
            || settings.quic_idle_timeout > Duration::from_secs(600)
        {
            return Err(value_err(
                "limits.quic_idle_timeout",
                "must be between 6s and 10m (agents send a keepalive every 5 s)",
            ));
        }
        if settings.access_ttl < Duration::from_secs(60)
            || settings.access_ttl > Duration::from_secs(24 * 3600)
        {
            return Err(value_err("tokens.access_ttl", "must be between 1m and 24h"));
        }
        if settings.code_ttl > settings.max_code_ttl {
            return Err(value_err(
                "enrolment.code_ttl",
                "is longer than enrolment.max_code_ttl",
            ));
        }
        Ok(settings)
    }

    /// Settings for a broker in a test: loopback, port 0, the given store.
    #[cfg(any(test, feature = "testkit"))]
    pub fn for_test(data_dir: &Path, database_url: Option<String>) -> Self {
        let over = Overrides {
            data_dir: Some(data_dir.to_owned()),
            database_url,
            api_listen: Some("127.0.0.1:0".into()),
            quic_listen: Some("127.0.0.1:0".into()),
            grace_period: Some("5s".into()),
            ..Overrides::default()
        };
        Self::resolve(over, FileConfig::default()).expect("test settings are valid")
    }

    /// The database URL, defaulting to SQLite in the data dir.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| crate::store::Store::sqlite_url(&self.data_dir.join("lanyard.db")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings, ConfigError> {
        Settings::resolve(
            Overrides::default(),
            FileConfig::parse(text).map_err(|m| value_err("file", m))?,
        )
    }

    #[test]
    fn empty_config_gives_the_documented_defaults() {
        let s = resolve("").unwrap();
        assert_eq!(s.api_listen.to_string(), "127.0.0.1:8443");
        assert_eq!(s.quic_listen.to_string(), "0.0.0.0:4433");
        assert_eq!(s.data_dir, PathBuf::from("./lanyard-data"));
        assert_eq!(s.grace_period, Duration::from_secs(30));
        assert_eq!(s.quic_idle_timeout, Duration::from_secs(30));
        assert_eq!(s.metrics_listen, None);
        assert!(s
            .database_url()
            .starts_with("sqlite://./lanyard-data/lanyard.db"));
    }

    #[test]
    fn the_valid_fixture_parses() {
        let s = resolve(include_str!("../tests/fixtures/valid.toml")).unwrap();
        assert_eq!(
            s.public_addrs,
            vec![
                "broker-a.council.example:4433".to_owned(),
                "broker.council.example:4433".to_owned()
            ]
        );
        assert_eq!(s.access_ttl, Duration::from_secs(600));
        assert_eq!(s.http_connections, 256);
        assert_eq!(
            s.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
        let oidc = s.oidc.expect("[oidc] in the fixture");
        assert_eq!(oidc.redirect_ports, vec![53682, 53683, 53684]);
        assert_eq!(oidc.recheck_every, Duration::from_secs(3600));
        assert!(oidc.provision);
        assert!(oidc.client_secret.is_none());
        assert!(resolve("").unwrap().oidc.is_none());
    }

    #[test]
    fn unknown_keys_are_refused_everywhere() {
        for text in [
            "colour = 'blue'",
            "[tokens]\naccess_tll = '5m'",
            "[limits]\nhttp_conns = 3",
            "[nope]",
        ] {
            let err = resolve(text).unwrap_err().to_string();
            assert!(err.contains("unknown"), "{text:?}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("api_listen = 'localhost'", "api_listen"),
            ("metrics_listen = 'localhost:9464'", "metrics_listen"),
            ("grace_period = 'soon'", "grace_period"),
            ("database_url = 'mysql://x'", "database_url"),
            ("tls_cert = '/x.pem'", "tls_cert"),
            ("public_addr = 'nohost'", "public_addr"),
            ("[tokens]\naccess_ttl = '1s'", "tokens.access_ttl"),
            ("[limits]\nhttp_connections = 0", "limits.http_connections"),
            ("[tls]\nserver_cert_ttl = '1s'", "tls.server_cert_ttl"),
            ("log_level = 'info,=x=y'", "log_level"),
            ("[oidc]\nclient_id = 'x'", "oidc.issuer"),
            ("[oidc]\nissuer = 'http://login.example'\nclient_id = 'x'", "oidc.issuer"),
            ("[oidc]\nissuer = 'https://login.example'", "oidc.client_id"),
            ("[oidc]\nissuer = 'https://l.example'\nclient_id = 'x'\nredirect_ports = []", "oidc.redirect_ports"),
            ("[oidc]\nissuer = 'https://l.example'\nclient_id = 'x'\ngroups_claim = 'a b'", "oidc.groups_claim"),
            ("[oidc]\nissuer = 'https://l.example'\nclient_id = 'x'\nrecheck_every = '0s'", "oidc.recheck_every"),
            ("[oidc]\nissuer = 'https://l.example'\nclient_id = 'x'\nclient_secret_file = '/nonexistent/s'", "oidc.client_secret_file"),
        ] {
            let err = resolve(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?}: {err}");
        }
    }

    #[test]
    fn public_addr_is_one_address_or_a_list() {
        let one = resolve("public_addr = 'a.example:4433'").unwrap();
        assert_eq!(one.public_addrs, vec!["a.example:4433".to_owned()]);
        let many = resolve("public_addr = ['a.example:4433', 'b.example:4433', 'a.example:4433']")
            .unwrap();
        assert_eq!(
            many.public_addrs,
            vec!["a.example:4433".to_owned(), "b.example:4433".to_owned()]
        );
        assert!(resolve("").unwrap().public_addrs.is_empty());
        let err = resolve("public_addr = ['a.example:4433', 'nohost']")
            .unwrap_err()
            .to_string();
        assert!(err.contains("public_addr"), "{err}");
        // Flags replace the file's list.
        let file = FileConfig::parse("public_addr = ['a.example:1', 'b.example:1']").unwrap();
        let over = Overrides {
            public_addrs: vec!["c.example:1".into()],
            ..Overrides::default()
        };
        assert_eq!(
            Settings::resolve(over, file).unwrap().public_addrs,
            vec!["c.example:1".to_owned()]
        );
    }

    #[test]
    fn flags_beat_the_file() {
        let file = FileConfig::parse("api_listen = '127.0.0.1:1'").unwrap();
        let over = Overrides {
            api_listen: Some("127.0.0.1:2".into()),
            ..Overrides::default()
        };
        assert_eq!(Settings::resolve(over, file).unwrap().api_listen.port(), 2);
    }

    #[test]
    fn database_urls_are_redacted_in_errors() {
        let err = resolve("database_url = 'mysql://u:hunter2@h/db'")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
