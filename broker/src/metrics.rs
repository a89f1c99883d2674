//! Counters and gauges, rendered in the Prometheus text format at /metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Metrics {
    /// API responses by status class: index 0 = 1xx ... 4 = 5xx.
    pub http_responses: [AtomicU64; 5],
    pub http_connections_refused: AtomicU64,
    pub http_timeouts: AtomicU64,
    /// Failed API answers held back from an address failing too often.
    pub http_slowed: AtomicU64,
    pub api_auth_denied: AtomicU64,
    pub api_forbidden: AtomicU64,
    pub api_logins_ok: AtomicU64,
    pub api_logins_failed: AtomicU64,
    pub enrol_codes_created: AtomicU64,
    pub http_connections_open: AtomicU64,
    pub quic_refused_capacity: AtomicU64,
    /// Incoming connections asked to prove their address (QUIC Retry).
    pub quic_retries: AtomicU64,
    pub quic_handshakes: AtomicU64,
    pub quic_handshake_failures: AtomicU64,
    pub enrolments: AtomicU64,
    pub enrolment_failures: AtomicU64,
    pub agent_signins: AtomicU64,
    pub agent_signin_failures: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub sessions_refused: AtomicU64,
    pub streams_allowed: AtomicU64,
    /// Refused streams and sessions by reason.
    pub denials: Mutex<BTreeMap<&'static str, u64>>,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    /// UDP flows opened.
    pub flows_opened: AtomicU64,
    /// Datagrams dropped: too large for the connection, for no flow, or
    /// not sent on.
    pub datagrams_dropped: std::sync::Arc<AtomicU64>,
    /// From an agent's first packet to the end of its TLS handshake.
    pub connect_latency: crate::histogram::Histogram,
    /// From a tunnel stream's header to the broker's answer (decision and
    /// the connection to the app).
    pub stream_open_latency: crate::histogram::Histogram,
    /// An agent's sign-in over QUIC, from the request to the answer.
    pub signin_latency: crate::histogram::Histogram,
    /// Bytes relayed per app: (up, down).
    apps: Mutex<BTreeMap<String, std::sync::Arc<AppBytes>>>,
    /// The last checks of the audit chain, quick and full: 0 none yet, 1
    /// passed, 2 failed.
    audit_quick: AtomicU8,
    audit_full: AtomicU8,
    /// When it ran, in Unix seconds.
    audit_checked_at: AtomicI64,
}

/// Which check of the audit chain: the quick one against the last
/// checkpoint (every checkpoint interval), or the full walk (`audit verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCheck {
    Quick,
    Full,
}

/// Bytes relayed for one app.
#[derive(Debug, Default)]
pub struct AppBytes {
    pub up: AtomicU64,
    pub down: AtomicU64,
}

/// Live figures read when /metrics is rendered.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// QUIC connections: handshaking, enrolling, signing in or in session.
    pub connections: u64,
    pub sessions: u64,
    pub streams: u64,
    pub store_up: bool,
    pub started_at_secs: i64,
    /// Who is admitted at what share of `capacity`.
    pub admission: crate::policy::Admission,
    /// `limits.agents`: agent connections this node takes at most.
    pub agents_limit: usize,
}

/// A Prometheus label value, quoted (`\`, `"` and newlines escaped).
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `lanyard_certificate_expiry_seconds{cert}`: seconds from `now_secs`
/// until each certificate's notAfter (negative once it has passed).
pub fn render_certificate_expiry(out: &mut String, certs: &[(&str, i64)], now_secs: i64) {
    let name = "lanyard_certificate_expiry_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Seconds until the certificate expires: server (issued by the broker's CA, renewed at half its life), api (--tls-cert), ca.\n# TYPE {name} gauge"
    );
    for (cert, not_after) in certs {
        let _ = writeln!(out, "{name}{{cert=\"{cert}\"}} {}", not_after - now_secs);
    }
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses[class].fetch_add(1, Relaxed);
    }

    /// The counters of `app`, made on first use.
    pub fn app(&self, app: &str) -> std::sync::Arc<AppBytes> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = apps.get(app) {
            return a.clone();
        }
        let a = std::sync::Arc::new(AppBytes::default());
        apps.insert(app.to_owned(), a.clone());
        a
    }

    /// Forgets the counters of apps that `exists` no longer knows and no
    /// stream is relaying for, so a deleted app's series do not stay in
    /// `/metrics` for good; a new app of the same name counts from zero.
    pub fn forget_apps(&self, exists: impl Fn(&str) -> bool) {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, a| exists(name) || std::sync::Arc::strong_count(a) > 1);
    }

    /// Records the outcome of a check of the audit chain at `now_secs`.
    /// The chain shows as wrong while either kind's last check failed: a
    /// full walk that failed is not cleared by a quick check, which cannot
    /// see every edit.
    pub fn audit_checked(&self, kind: AuditCheck, ok: bool, now_secs: i64) {
        let slot = match kind {
            AuditCheck::Quick => &self.audit_quick,
            AuditCheck::Full => &self.audit_full,
        };
        slot.store(if ok { 1 } else { 2 }, Relaxed);
        self.audit_checked_at.store(now_secs, Relaxed);
    }

    /// Bytes relayed per app so far: app -> (up, down).
    pub fn app_bytes(&self) -> BTreeMap<String, (u64, u64)> {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), (v.up.load(Relaxed), v.down.load(Relaxed))))
            .collect()
    }

    pub fn deny(&self, reason: &'static str) {
        *self
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn render(&self, live: Live) -> String {
        let Live {
            connections,
            sessions,
            streams,
            store_up,
            started_at_secs,
            admission,
            agents_limit,
        } = live;
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "lanyard_api_auth_denied_total",
            "API requests refused for a missing or bad token (401).",
            self.api_auth_denied.load(Relaxed),
        );
        counter(
            "lanyard_api_forbidden_total",
            "API requests refused for lack of admin rights (403).",
            self.api_forbidden.load(Relaxed),
        );
        counter(
            "lanyard_api_logins_total",
            "Successful API sign-ins.",
            self.api_logins_ok.load(Relaxed),
        );
        counter(
            "lanyard_api_login_failures_total",
            "Failed API sign-ins.",
            self.api_logins_failed.load(Relaxed),
        );
        counter(
            "lanyard_enrolment_codes_created_total",
            "Enrolment codes issued.",
            self.enrol_codes_created.load(Relaxed),
        );
        for (name, help, v) in [
            (
                "lanyard_quic_handshakes_total",
                "Agent QUIC handshakes completed.",
                &self.quic_handshakes,
            ),
            (
                "lanyard_quic_handshake_failures_total",
                "Agent QUIC handshakes that failed or timed out.",
                &self.quic_handshake_failures,
            ),
            (
                "lanyard_quic_refused_capacity_total",
                "Agent connections refused at a cap (handshakes, agents or enrolments).",
                &self.quic_refused_capacity,
            ),
            (
                "lanyard_quic_retries_total",
                "Incoming connections asked to prove their address with a QUIC Retry.",
                &self.quic_retries,
            ),
            (
                "lanyard_enrolments_total",
                "Devices enrolled.",
                &self.enrolments,
            ),
            (
                "lanyard_enrolment_failures_total",
                "Enrolments refused.",
                &self.enrolment_failures,
            ),
            (
                "lanyard_agent_signins_total",
                "Agent sign-ins that succeeded.",
                &self.agent_signins,
            ),
            (
                "lanyard_agent_signin_failures_total",
                "Agent sign-ins refused.",
                &self.agent_signin_failures,
            ),
            (
                "lanyard_sessions_opened_total",
                "Tunnel sessions opened.",
                &self.sessions_opened,
            ),
            (
                "lanyard_sessions_refused_total",
                "Tunnel sessions refused.",
                &self.sessions_refused,
            ),
            (
                "lanyard_streams_allowed_total",
                "Tunnel streams allowed.",
                &self.streams_allowed,
            ),
            (
                "lanyard_tunnel_bytes_up_total",
                "Bytes relayed from agents to apps.",
                &self.bytes_up,
            ),
            (
                "lanyard_tunnel_bytes_down_total",
                "Bytes relayed from apps to agents.",
                &self.bytes_down,
            ),
            (
                "lanyard_udp_flows_opened_total",
                "UDP flows opened.",
                &self.flows_opened,
            ),
            (
                "lanyard_datagrams_dropped_total",
                "Datagrams dropped: too large for the connection, of no flow, or not sent on.",
                &*self.datagrams_dropped,
            ),
        ] {
            counter(name, help, v.load(Relaxed));
        }
        counter(
            "lanyard_http_connections_refused_total",
            "HTTPS connections refused at the connection cap.",
            self.http_connections_refused.load(Relaxed),
        );
        counter(
            "lanyard_http_request_timeouts_total",
            "API requests that ran out of time.",
            self.http_timeouts.load(Relaxed),
        );
        counter(
            "lanyard_http_slowed_total",
            "Failed API answers held back a second: their address had failed too often this minute.",
            self.http_slowed.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP lanyard_http_responses_total API responses by status class."
        );
        let _ = writeln!(out, "# TYPE lanyard_http_responses_total counter");
        for (i, c) in self.http_responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "lanyard_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP lanyard_http_connections_open Open HTTPS connections to the admin API."
        );
        let _ = writeln!(out, "# TYPE lanyard_http_connections_open gauge");
        let _ = writeln!(
            out,
            "lanyard_http_connections_open {}",
            self.http_connections_open.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lanyard_denials_total Refused sessions and streams by reason (each also audited)."
        );
        let _ = writeln!(out, "# TYPE lanyard_denials_total counter");
        for (reason, n) in self
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "lanyard_denials_total{{reason=\"{reason}\"}} {n}");
        }
        for (name, help, v) in [
            (
                "lanyard_quic_connections",
                "QUIC connections open on this node (handshaking, enrolling, signing in or in a session).",
                connections,
            ),
            (
                "lanyard_sessions_live",
                "Agent sessions open on this node.",
                sessions,
            ),
            (
                "lanyard_streams_open",
                "Tunnel streams open on this node.",
                streams,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP lanyard_app_bytes_total Bytes relayed per app (apps deleted and idle are dropped).\n# TYPE lanyard_app_bytes_total counter"
        );
        for (app, (up, down)) in self.app_bytes() {
            let app = label(&app);
            let _ = writeln!(
                out,
                "lanyard_app_bytes_total{{app={app},direction=\"to_app\"}} {up}\nlanyard_app_bytes_total{{app={app},direction=\"from_app\"}} {down}"
            );
        }
        let capacity = admission.capacity.max(1);
        for (name, help, v) in [
            (
                "lanyard_admission_capacity",
                "Agent sessions this node is sized for ([admission] capacity).",
                capacity.to_string(),
            ),
            (
                "lanyard_agents_limit",
                "Agent connections this node takes at most ([limits] agents).",
                agents_limit.to_string(),
            ),
            (
                "lanyard_capacity_used_ratio",
                "Live sessions as a share of capacity (1 = full).",
                (sessions as f64 / capacity as f64).to_string(),
            ),
            (
                "lanyard_admission_lowest_priority",
                "The lowest-ranked priority admitted now: 3 all, 2 or 1 when busy, 0 none (full).",
                admission
                    .lowest_admitted(usize::try_from(sessions).unwrap_or(usize::MAX))
                    .to_string(),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP lanyard_admission_threshold_ratio Share of capacity from which only the priorities named are admitted.\n# TYPE lanyard_admission_threshold_ratio gauge"
        );
        for (admits, percent) in [
            ("priority_1_2", admission.only_priority_1_2_at),
            ("priority_1", admission.only_priority_1_at),
        ] {
            let _ = writeln!(
                out,
                "lanyard_admission_threshold_ratio{{admits=\"{admits}\"}} {}",
                f64::from(percent) / 100.0
            );
        }
        let (quick, full) = (
            self.audit_quick.load(Relaxed),
            self.audit_full.load(Relaxed),
        );
        if quick != 0 || full != 0 {
            let _ = writeln!(
                out,
                "# HELP lanyard_audit_chain_ok Whether the last check of the audit chain passed (1) or found it wrong (0).\n# TYPE lanyard_audit_chain_ok gauge\nlanyard_audit_chain_ok {}",
                u8::from(quick != 2 && full != 2)
            );
            let _ = writeln!(
                out,
                "# HELP lanyard_audit_chain_checked_time_seconds When the audit chain was last checked.\n# TYPE lanyard_audit_chain_checked_time_seconds gauge\nlanyard_audit_chain_checked_time_seconds {}",
                self.audit_checked_at.load(Relaxed)
            );
        }
        crate::process::Reading::now().render(&mut out);
        self.connect_latency.render(
            &mut out,
            "lanyard_connect_seconds",
            "Agent QUIC handshakes, from the first packet to an established connection.",
        );
        self.stream_open_latency.render(
            &mut out,
            "lanyard_stream_open_seconds",
            "Tunnel streams, from the header to the answer (decision and app connect).",
        );
        self.signin_latency.render(
            &mut out,
            "lanyard_signin_seconds",
            "Agent sign-ins, from the request to the answer (password hash, TOTP, store), whatever the answer.",
        );
        let _ = writeln!(
            out,
            "# HELP lanyard_store_up Whether the store answered the last check (1) or not (0)."
        );
        let _ = writeln!(out, "# TYPE lanyard_store_up gauge");
        let _ = writeln!(out, "lanyard_store_up {}", u8::from(store_up));
        let _ = writeln!(
            out,
            "# HELP lanyard_start_time_seconds When this broker process started."
        );
        let _ = writeln!(out, "# TYPE lanyard_start_time_seconds gauge");
        let _ = writeln!(out, "lanyard_start_time_seconds {started_at_secs}");
        let _ = writeln!(out, "# HELP lanyard_build_info The running version.");
        let _ = writeln!(out, "# TYPE lanyard_build_info gauge");
        let _ = writeln!(
            out,
            "lanyard_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_class() {
        let m = Metrics::default();
        m.count_response(200);
        m.count_response(204);
        m.count_response(403);
        m.deny("not_in_group");
        m.deny("not_in_group");
        let text = m.render(Live {
            connections: 4,
            sessions: 3,
            streams: 7,
            store_up: true,
            started_at_secs: 5,
            admission: crate::policy::Admission {
                capacity: 4,
                only_priority_1_2_at: 50,
                only_priority_1_at: 75,
            },
            agents_limit: 10,
        });
        assert!(
            text.contains("lanyard_denials_total{reason=\"not_in_group\"} 2"),
            "{text}"
        );
        assert!(text.contains("lanyard_sessions_live 3"), "{text}");
        assert!(text.contains("lanyard_quic_connections 4"), "{text}");
        assert!(text.contains("lanyard_streams_open 7"), "{text}");
        assert!(
            text.contains("lanyard_http_responses_total{class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(text.contains("lanyard_http_responses_total{class=\"4xx\"} 1"));
        assert!(text.contains("lanyard_store_up 1"));
        assert!(
            text.contains("lanyard_capacity_used_ratio 0.75\n"),
            "{text}"
        );
        assert!(
            text.contains("lanyard_admission_lowest_priority 1\n"),
            "{text}"
        );
        assert!(text.contains("lanyard_admission_capacity 4\n"), "{text}");
        assert!(text.contains("lanyard_agents_limit 10\n"), "{text}");
        assert!(
            text.contains("lanyard_admission_threshold_ratio{admits=\"priority_1_2\"} 0.5\n"),
            "{text}"
        );
        // No check of the audit chain yet: no figure rather than a guess.
        assert!(!text.contains("lanyard_audit_chain_ok"), "{text}");
    }

    fn live() -> Live {
        Live {
            connections: 0,
            sessions: 0,
            streams: 0,
            store_up: true,
            started_at_secs: 0,
            admission: crate::policy::Admission {
                capacity: 10,
                only_priority_1_2_at: 80,
                only_priority_1_at: 90,
            },
            agents_limit: 10,
        }
    }

    #[test]
    fn bytes_per_app_are_labelled_and_a_deleted_idle_app_is_forgotten() {
        let m = Metrics::default();
        let hr = m.app("hr");
        hr.up.fetch_add(100, Relaxed);
        hr.down.fetch_add(7, Relaxed);
        m.app("gone").up.fetch_add(1, Relaxed);
        let busy = m.app("gone-but-busy");
        busy.down.fetch_add(3, Relaxed);
        m.app("odd\"name").up.fetch_add(1, Relaxed);
        let text = m.render(live());
        assert!(
            text.contains("lanyard_app_bytes_total{app=\"hr\",direction=\"to_app\"} 100\n"),
            "{text}"
        );
        assert!(
            text.contains("lanyard_app_bytes_total{app=\"hr\",direction=\"from_app\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("lanyard_app_bytes_total{app=\"odd\\\"name\",direction=\"to_app\"} 1\n"),
            "{text}"
        );
        // Only "hr" still exists; "gone-but-busy" has a stream relaying.
        m.forget_apps(|a| a == "hr");
        let text = m.render(live());
        assert!(text.contains("app=\"hr\""), "{text}");
        assert!(!text.contains("app=\"gone\""), "{text}");
        assert!(text.contains("app=\"gone-but-busy\""), "{text}");
        drop(busy);
        m.forget_apps(|a| a == "hr");
        let text = m.render(live());
        assert!(!text.contains("gone-but-busy"), "{text}");
        assert_eq!(m.app_bytes().len(), 1);
        drop(hr);
    }

    #[test]
    fn the_audit_check_is_shown_once_made() {
        let m = Metrics::default();
        m.audit_checked(AuditCheck::Quick, true, 1_700_000_000);
        let text = m.render(live());
        assert!(text.contains("lanyard_audit_chain_ok 1\n"), "{text}");
        assert!(text.contains("lanyard_audit_chain_checked_time_seconds 1700000000\n"));
        m.audit_checked(AuditCheck::Quick, false, 1_700_000_060);
        assert!(m.render(live()).contains("lanyard_audit_chain_ok 0\n"));
        // A failed full walk stays failed while quick checks pass...
        m.audit_checked(AuditCheck::Full, false, 1_700_000_070);
        m.audit_checked(AuditCheck::Quick, true, 1_700_000_120);
        assert!(m.render(live()).contains("lanyard_audit_chain_ok 0\n"));
        // ...until a full walk passes.
        m.audit_checked(AuditCheck::Full, true, 1_700_000_130);
        assert!(m.render(live()).contains("lanyard_audit_chain_ok 1\n"));
    }
}
