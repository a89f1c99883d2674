//! The stress run's figures: the summary (table and JSON) and the HTML
//! report with charts over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::sim::Outcome;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of `ms`, in milliseconds.
pub fn percentiles(mut ms: Vec<f64>) -> Percentiles {
    if ms.is_empty() {
        return Percentiles::default();
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
        (ms[rank - 1] * 1000.0).round() / 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Point {
    pub second: u64,
    pub connected: u64,
    pub connect_p99_ms: f64,
    pub bytes_per_s: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub agents_requested: u64,
    pub agents_connected: u64,
    pub agents_failed: u64,
    /// Connections lost while they should have stayed up (a broker
    /// restart, say), how many came back, how long that took from the
    /// agent noticing, and how many agents were still down at the end.
    pub drops: u64,
    pub reconnects: u64,
    pub reconnect_ms: Percentiles,
    pub agents_lost: u64,
    pub connect_ms: Percentiles,
    pub stream_open_ms: Percentiles,
    pub streams_ok: u64,
    pub streams_failed: u64,
    pub bytes_verified: u64,
    pub throughput_bytes_per_s: f64,
    pub errors: BTreeMap<String, u64>,
    pub app: String,
    pub duration_s: f64,
    pub ramp_s: f64,
    pub streams_per_agent: u32,
    pub bytes_per_stream: u64,
    pub wall_s: f64,
    pub timeline: Vec<Point>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
pub fn summarise(
    outcomes: &[Outcome],
    app: &str,
    duration: Duration,
    ramp: Duration,
    streams_per_agent: u32,
    bytes_per_stream: u64,
    wall: Duration,
) -> Summary {
    let connected: Vec<&Outcome> = outcomes.iter().filter(|o| o.connected.is_some()).collect();
    let mut errors = BTreeMap::new();
    for o in outcomes {
        for (_, e) in &o.errors {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
    }
    let bytes_verified: u64 = outcomes.iter().map(|o| o.bytes_verified).sum();
    let seconds = wall.as_secs() + 1;
    let mut timeline: Vec<Point> = (0..=seconds)
        .map(|second| Point {
            second,
            ..Point::default()
        })
        .collect();
    let last = timeline.len() - 1;
    let slot = |d: Duration| (d.as_secs() as usize).min(last);
    let mut connects: Vec<Vec<f64>> = vec![Vec::new(); last + 1];
    for o in outcomes {
        if let Some((at, took)) = o.connected {
            for (from, to) in up_intervals(o, at) {
                let (from, to) = (slot(from), to.map(slot).unwrap_or(last));
                for p in &mut timeline[from..=to.max(from)] {
                    p.connected += 1;
                }
            }
            connects[slot(at)].push(ms(took));
        }
        for (at, _) in &o.streams_ok {
            timeline[slot(*at)].bytes_per_s += bytes_per_stream;
        }
        for (at, _) in &o.errors {
            timeline[slot(*at)].errors += 1;
        }
    }
    for (p, c) in timeline.iter_mut().zip(connects) {
        p.connect_p99_ms = percentiles(c).p99;
    }
    Summary {
        agents_requested: outcomes.len() as u64,
        agents_connected: connected.len() as u64,
        agents_failed: (outcomes.len() - connected.len()) as u64,
        drops: outcomes.iter().map(|o| o.drops.len() as u64).sum(),
        reconnects: outcomes
            .iter()
            .flat_map(|o| &o.drops)
            .filter(|d| d.1.is_some())
            .count() as u64,
        reconnect_ms: percentiles(
            outcomes
                .iter()
                .flat_map(|o| &o.drops)
                .filter_map(|&(lost, back)| back.map(|b| ms(b.saturating_sub(lost))))
                .collect(),
        ),
        agents_lost: outcomes
            .iter()
            .filter(|o| o.drops.last().is_some_and(|d| d.1.is_none()))
            .count() as u64,
        connect_ms: percentiles(
            connected
                .iter()
                .filter_map(|o| o.connected.map(|(_, t)| ms(t)))
                .collect(),
        ),
        stream_open_ms: percentiles(
            outcomes
                .iter()
                .flat_map(|o| o.streams_ok.iter().map(|(_, t)| ms(*t)))
                .collect(),
        ),
        streams_ok: outcomes.iter().map(|o| o.streams_ok.len() as u64).sum(),
        streams_failed: outcomes.iter().map(|o| o.streams_failed).sum(),
        bytes_verified,
        throughput_bytes_per_s: (bytes_verified as f64 / wall.as_secs_f64().max(0.001)).round(),
        errors,
        app: app.to_owned(),
        duration_s: duration.as_secs_f64(),
        ramp_s: ramp.as_secs_f64(),
        streams_per_agent,
        bytes_per_stream,
        wall_s: (wall.as_secs_f64() * 10.0).round() / 10.0,
        timeline,
    }
}

/// The spans an agent that connected at `at` was up: split by its drops,
/// the last one open-ended unless it disconnected or was lost for good.
fn up_intervals(o: &Outcome, at: Duration) -> Vec<(Duration, Option<Duration>)> {
    let mut spans = Vec::with_capacity(o.drops.len() + 1);
    let mut from = Some(at);
    for &(lost, back) in &o.drops {
        if let Some(f) = from {
            spans.push((f, Some(lost)));
        }
        from = back;
    }
    if let Some(f) = from {
        spans.push((f, o.disconnected_at));
    }
    spans
}

/// The summary as the terminal shows it.
pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let pct = |p: &Percentiles| {
        format!(
            "{:.1} / {:.1} / {:.1} (max {:.1})",
            p.p50, p.p95, p.p99, p.max
        )
    };
    let _ = writeln!(
        out,
        "agents             {} requested, {} connected, {} failed",
        s.agents_requested, s.agents_connected, s.agents_failed
    );
    let _ = writeln!(
        out,
        "connect ms         p50 / p95 / p99 {}",
        pct(&s.connect_ms)
    );
    if s.drops > 0 {
        let _ = writeln!(
            out,
            "dropped            {} times, {} back, {} agents still down at the end",
            s.drops, s.reconnects, s.agents_lost
        );
        let _ = writeln!(
            out,
            "back again ms      p50 / p95 / p99 {}",
            pct(&s.reconnect_ms)
        );
    }
    let _ = writeln!(
        out,
        "stream open ms     p50 / p95 / p99 {}",
        pct(&s.stream_open_ms)
    );
    let _ = writeln!(
        out,
        "streams            {} ok, {} failed",
        s.streams_ok, s.streams_failed
    );
    let _ = writeln!(
        out,
        "bytes verified     {} ({:.1} MB/s over {:.1} s)",
        s.bytes_verified,
        s.throughput_bytes_per_s / 1e6,
        s.wall_s
    );
    if s.errors.is_empty() {
        let _ = writeln!(out, "errors             none");
    } else {
        let _ = writeln!(out, "errors");
        for (kind, n) in &s.errors {
            let _ = writeln!(out, "  {n:>6}  {kind}");
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One line chart as inline SVG.
fn chart(title: &str, unit: &str, points: &[(u64, f64)]) -> String {
    let (w, h, pad) = (640.0, 200.0, 40.0);
    let max_x = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            format!(
                "{:.1},{:.1}",
                pad + *x as f64 / max_x * (w - 2.0 * pad),
                h - pad - y / max_y * (h - 2.0 * pad)
            )
        })
        .collect();
    format!(
        r##"<figure><figcaption>{title}</figcaption><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{title}">
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#888"/>
<text x="{pad}" y="{t}" font-size="11">{max_y:.1} {unit}</text><text x="{r}" y="{bl}" font-size="11" text-anchor="end">{max_x} s</text>
<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{pts}"/></svg></figure>"##,
        title = escape(title),
        b = h - pad,
        r = w - pad,
        t = pad - 6.0,
        bl = h - pad + 16.0,
        pts = path.join(" "),
    )
}

/// The HTML report: the summary and charts over time.
pub fn html(s: &Summary) -> String {
    let series = |f: &dyn Fn(&Point) -> f64| -> Vec<(u64, f64)> {
        s.timeline.iter().map(|p| (p.second, f(p))).collect()
    };
    let mut errors = String::new();
    for (kind, n) in &s.errors {
        let _ = write!(errors, "<tr><td>{}</td><td>{n}</td></tr>", escape(kind));
    }
    if errors.is_empty() {
        errors.push_str("<tr><td colspan=\"2\">none</td></tr>");
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Lanyard stress run</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}figure{{margin:1em 0}}figcaption{{font-weight:600}}td,th{{padding:.2em 1em;text-align:left}}</style></head><body>
<h1>Lanyard stress run</h1>
<p>{agents} agents against app <code>{app}</code>, ramp {ramp:.0} s, hold {duration:.0} s, {k} streams of {b} bytes each.</p>
<pre>{table}</pre>
{c1}{c2}{c3}{c4}
<h2>Errors by kind</h2><table><tr><th>kind</th><th>count</th></tr>{errors}</table>
</body></html>
"#,
        agents = s.agents_requested,
        app = escape(&s.app),
        ramp = s.ramp_s,
        duration = s.duration_s,
        k = s.streams_per_agent,
        b = s.bytes_per_stream,
        table = escape(&table(s)),
        c1 = chart(
            "Connected agents",
            "agents",
            &series(&|p| p.connected as f64)
        ),
        c2 = chart("Connect p99", "ms", &series(&|p| p.connect_p99_ms)),
        c3 = chart(
            "Throughput (verified)",
            "MB/s",
            &series(&|p| p.bytes_per_s as f64 / 1e6)
        ),
        c4 = chart("Errors", "per s", &series(&|p| p.errors as f64)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(percentiles(vec![]), Percentiles::default());
        assert_eq!(percentiles(vec![7.0]).p99, 7.0);
    }

    #[test]
    fn a_summary_counts_what_happened_and_charts_it() {
        let ok = Outcome {
            connected: Some((Duration::from_millis(500), Duration::from_millis(12))),
            disconnected_at: Some(Duration::from_secs(3)),
            streams_ok: vec![(Duration::from_millis(1500), Duration::from_millis(2))],
            streams_failed: 0,
            bytes_verified: 1000,
            errors: vec![],
            drops: vec![],
        };
        let failed = Outcome {
            errors: vec![(Duration::from_secs(1), "refused: at capacity".into())],
            ..Outcome::default()
        };
        let s = summarise(
            &[ok, failed],
            "echo",
            Duration::from_secs(3),
            Duration::from_secs(1),
            1,
            1000,
            Duration::from_secs(3),
        );
        assert_eq!((s.agents_connected, s.agents_failed), (1, 1));
        assert_eq!((s.streams_ok, s.bytes_verified), (1, 1000));
        assert_eq!(s.errors["refused: at capacity"], 1);
        assert_eq!(s.connect_ms.p50, 12.0);
        assert_eq!(s.timeline[1].bytes_per_s, 1000);
        assert_eq!(s.timeline[0].connected, 1);
        assert_eq!(s.timeline[1].errors, 1);
        let page = html(&s);
        assert!(page.contains("<svg"), "charts");
        assert!(page.contains("refused: at capacity"));
        let json = serde_json::to_value(&s).unwrap();
        for field in [
            "agents_requested",
            "agents_connected",
            "agents_failed",
            "connect_ms",
            "stream_open_ms",
            "streams_ok",
            "streams_failed",
            "bytes_verified",
            "throughput_bytes_per_s",
            "errors",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(json["connect_ms"].get("p95").is_some());
        assert_eq!((s.drops, s.reconnects, s.agents_lost), (0, 0, 0));
        assert!(!table(&s).contains("dropped"));
    }

    #[test]
    fn drops_split_the_connected_line_and_count_who_came_back() {
        let secs = Duration::from_secs;
        let bouncy = Outcome {
            connected: Some((Duration::from_millis(500), Duration::from_millis(10))),
            // Lost at 2 s and back at 4 s; lost again at 6 s for good.
            drops: vec![(secs(2), Some(secs(4))), (secs(6), None)],
            disconnected_at: Some(secs(8)),
            ..Outcome::default()
        };
        let steady = Outcome {
            connected: Some((Duration::from_millis(500), Duration::from_millis(10))),
            disconnected_at: Some(secs(8)),
            ..Outcome::default()
        };
        let s = summarise(&[bouncy, steady], "echo", secs(8), secs(0), 0, 0, secs(8));
        assert_eq!((s.drops, s.reconnects, s.agents_lost), (2, 1, 1));
        assert_eq!(s.reconnect_ms.max, 2000.0);
        let connected: Vec<u64> = s.timeline.iter().map(|p| p.connected).collect();
        assert_eq!(connected[..9], [2, 2, 2, 1, 2, 2, 2, 1, 1]);
        assert!(table(&s).contains("dropped            2 times, 1 back, 1 agents still down"));
    }
}
