//! Counters and gauges, rendered in the Prometheus text format at /metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// API responses by status class: index 0 = 1xx ... 4 = 5xx.
    pub http_responses: [AtomicU64; 5],
    pub http_connections_refused: AtomicU64,
    pub http_timeouts: AtomicU64,
    pub api_auth_denied: AtomicU64,
    pub api_forbidden: AtomicU64,
    pub api_logins_ok: AtomicU64,
    pub api_logins_failed: AtomicU64,
    pub enrol_codes_created: AtomicU64,
    pub http_connections_open: AtomicU64,
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses[class].fetch_add(1, Relaxed);
    }

    pub fn render(&self, store_up: bool, started_at_secs: i64) -> String {
        let mut out = String::with_capacity(2048);
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
        let text = m.render(true, 5);
        assert!(
            text.contains("lanyard_http_responses_total{class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(text.contains("lanyard_http_responses_total{class=\"4xx\"} 1"));
        assert!(text.contains("lanyard_store_up 1"));
    }
}
