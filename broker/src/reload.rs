//! SIGHUP: the configuration file, the token-signing keys and the
//! `--tls-cert` files read again while serving. What can change live changes ([`Live`]); what cannot is
//! named in one log line and waits for a restart.

use std::time::Duration;

use crate::config::Settings;
use crate::policy::Admission;

/// The settings a running broker takes from a new configuration, each read
/// where it is used (a request, a session, a sign-in, a renewal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub refresh_ttl: Duration,
    pub api_token_ttl: Duration,
    pub code_ttl: Duration,
    pub max_code_ttl: Duration,
    pub device_cert_ttl: Duration,
    pub admission: Admission,
    pub http_request_timeout: Duration,
    pub server_cert_ttl: Duration,
    pub checkpoint_interval: Duration,
}

impl Live {
    pub fn of(s: &Settings) -> Self {
        Self {
            refresh_ttl: s.refresh_ttl,
            api_token_ttl: s.api_token_ttl,
            code_ttl: s.code_ttl,
            max_code_ttl: s.max_code_ttl,
            device_cert_ttl: s.device_cert_ttl,
            admission: s.admission,
            http_request_timeout: s.http_request_timeout,
            server_cert_ttl: s.server_cert_ttl,
            checkpoint_interval: s.checkpoint_interval,
        }
    }

    /// The config keys whose values differ between `self` and `new`.
    fn changed(&self, new: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        check("tokens.refresh_ttl", self.refresh_ttl != new.refresh_ttl);
        check("tokens.api_ttl", self.api_token_ttl != new.api_token_ttl);
        check("enrolment.code_ttl", self.code_ttl != new.code_ttl);
        check(
            "enrolment.max_code_ttl",
            self.max_code_ttl != new.max_code_ttl,
        );
        check(
            "enrolment.device_cert_ttl",
            self.device_cert_ttl != new.device_cert_ttl,
        );
        check("admission", self.admission != new.admission);
        check(
            "limits.http_request_timeout",
            self.http_request_timeout != new.http_request_timeout,
        );
        check(
            "tls.server_cert_ttl",
            self.server_cert_ttl != new.server_cert_ttl,
        );
        check(
            "audit.checkpoint_interval",
            self.checkpoint_interval != new.checkpoint_interval,
        );
        out
    }
}

/// The keys that differ between the running settings and `new` but take
/// effect only at a restart (listeners, store, data dir, sizes fixed at
/// start).
pub fn needs_restart(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    check("data_dir", old.data_dir != new.data_dir);
    check("database_url", old.database_url != new.database_url);
    check("api_listen", old.api_listen != new.api_listen);
    check("quic_listen", old.quic_listen != new.quic_listen);
    check("metrics_listen", old.metrics_listen != new.metrics_listen);
    check("public_addr", old.public_addrs != new.public_addrs);
    check("server_names", old.server_names != new.server_names);
    check("tls_cert/tls_key", old.tls != new.tls);
    check("grace_period", old.grace_period != new.grace_period);
    check("node", old.node != new.node);
    check("tokens.access_ttl", old.access_ttl != new.access_ttl);
    check(
        "limits.http_connections",
        old.http_connections != new.http_connections,
    );
    check(
        "limits.http_connections_per_address",
        old.http_connections_per_address != new.http_connections_per_address,
    );
    check(
        "limits.http_body_bytes",
        old.http_body_bytes != new.http_body_bytes,
    );
    check("limits.agents", old.max_agents != new.max_agents);
    check(
        "limits.streams_per_agent",
        old.streams_per_agent != new.streams_per_agent,
    );
    check(
        "limits.quic_idle_timeout",
        old.quic_idle_timeout != new.quic_idle_timeout,
    );
    check(
        "policy.managed_requires_allocation",
        old.managed_requires_allocation != new.managed_requires_allocation,
    );
    check(
        "policy.rules_max_age",
        old.rules_max_age != new.rules_max_age,
    );
    check(
        "audit.checkpoint_file",
        old.checkpoint_file != new.checkpoint_file,
    );
    out
}

/// What one SIGHUP did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Live keys that took a new value.
    pub applied: Vec<&'static str>,
    /// Keys that changed but wait for a restart.
    pub need_restart: Vec<&'static str>,
    /// The `--tls-cert` certificate's new notAfter, if files are served.
    pub api_cert_not_after: Option<i64>,
}

/// Applies `new` (the configuration read again) and re-reads the
/// token-signing keys and the `--tls-cert` files. A configuration that
/// does not resolve changes nothing; keys or a certificate file that
/// cannot be read leave the ones in use in place. Each failure is logged
/// and returned as an error; the broker goes on either way.
pub fn apply<E: std::fmt::Display>(
    state: &crate::state::Shared,
    new: Result<Settings, E>,
) -> (Option<Reloaded>, Vec<String>) {
    let mut errors = Vec::new();
    let mut done = None;
    match new {
        Ok(new) => {
            let fresh = Live::of(&new);
            let mut live = state.live.write().unwrap_or_else(|p| p.into_inner());
            let applied = live.changed(&fresh);
            *live = fresh;
            drop(live);
            let need_restart = needs_restart(&state.settings, &new);
            if !need_restart.is_empty() {
                tracing::warn!(
                    keys = %need_restart.join(", "),
                    "SIGHUP: these settings changed but take effect only after a restart"
                );
            }
            done = Some(Reloaded {
                applied,
                need_restart,
                api_cert_not_after: None,
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the configuration was not reloaded; the running one stays");
            errors.push(e.to_string());
        }
    }
    let keys = crate::datadir::DataDir::open(&state.settings.data_dir)
        .and_then(|dir| crate::auth::tokens::TokenKeys::load(&dir));
    match keys {
        Ok(keys) => {
            let mut current = state.token_keys.write().unwrap_or_else(|p| p.into_inner());
            if current.kids() != keys.kids() {
                tracing::info!(
                    signing = keys.kid(),
                    verifying = %keys.kids().join(", "),
                    "SIGHUP: token-signing keys reloaded"
                );
                *current = std::sync::Arc::new(keys);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the token-signing keys were not reloaded; the running ones stay");
            errors.push(e.to_string());
        }
    }
    match state.certs.reload_files() {
        Ok(not_after) => {
            if let Some(d) = done.as_mut() {
                d.api_cert_not_after = not_after;
            }
            if let Some(not_after) = not_after {
                tracing::info!(not_after, "SIGHUP: reloaded the --tls-cert certificate");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the --tls-cert certificate was not reloaded; serving the old one");
            errors.push(e.to_string());
        }
    }
    (done, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides};

    fn settings(text: &str) -> Settings {
        Settings::resolve(Overrides::default(), FileConfig::parse(text).unwrap()).unwrap()
    }

    #[test]
    fn live_and_restart_keys_are_told_apart() {
        let old = settings("");
        let new = settings(
            "api_listen = '127.0.0.1:9'\n[admission]\ncapacity = 7\n[tokens]\napi_ttl = '1h'",
        );
        assert_eq!(
            Live::of(&old).changed(&Live::of(&new)),
            vec!["tokens.api_ttl", "admission"]
        );
        assert_eq!(needs_restart(&old, &new), vec!["api_listen"]);
        assert!(needs_restart(&old, &settings("")).is_empty());
        assert!(Live::of(&old).changed(&Live::of(&old)).is_empty());
    }
}
