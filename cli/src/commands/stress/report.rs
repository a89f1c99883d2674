//! The stress run's figures: the summary (table and JSON) and the HTML
//! report with charts over time.
//!
//! Where nothing was measured the figures say so: a second in which no
//! agent connected has no connect time (`null`, a gap in the chart), not a
//! connect time of 0; a second in which no stream ran has no throughput.

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

/// One second of the run. `None` (JSON `null`): nothing to measure in
/// that second.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Point {
    pub second: u64,
    pub connected: u64,
    /// Of the agents that connected in this second.
    pub connect_p99_ms: Option<f64>,
    /// Of the streams that finished in this second.
    pub stream_open_p99_ms: Option<f64>,
    /// Streams that finished, checked, in this second.
    pub streams: u64,
    /// Verified bytes, each stream's spread over the time it ran; `None`
    /// if no stream ran in this second.
    pub bytes_per_s: Option<u64>,
    pub errors: u64,
}

/// Verified bytes per second over the seconds in which streams ran: the
/// same figures the throughput chart draws.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Throughput {
    pub mean_bytes_per_s: f64,
    pub peak_bytes_per_s: f64,
    pub peak_second: Option<u64>,
    /// Seconds in which at least one stream ran.
    pub measured_s: u64,
}

/// The broker the run was against, as it describes itself.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Broker {
    pub url: String,
    pub version: Option<String>,
    pub node: Option<String>,
    /// Agent sessions this node is sized for (`admission.capacity`).
    pub capacity: Option<u64>,
}

/// The run in one line, and whether it passed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Verdict {
    pub ok: bool,
    pub headline: String,
}

/// What became of the test identities the run made.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Cleanup {
    /// `removed`, `kept` (`--keep`) or `incomplete` (see `problems`).
    pub outcome: String,
    pub person: String,
    pub group: String,
    /// The echo app, if the run made one.
    pub app: Option<String>,
    pub devices_removed: u64,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// When the run started (UTC).
    pub started_at: String,
    pub broker: Broker,
    pub verdict: Verdict,
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
    /// The parts of a connect: the QUIC handshake, the sign-in (empty when
    /// the agents were signed in before the run, `--signed-in`), and the
    /// session's hello until its welcome.
    pub handshake_ms: Percentiles,
    pub sign_in_ms: Percentiles,
    pub session_ms: Percentiles,
    pub stream_open_ms: Percentiles,
    pub streams_ok: u64,
    pub streams_failed: u64,
    pub bytes_verified: u64,
    /// The mean of `throughput` (kept for older readers of this file).
    pub throughput_bytes_per_s: f64,
    pub throughput: Throughput,
    pub errors: BTreeMap<String, u64>,
    pub app: String,
    pub duration_s: f64,
    pub ramp_s: f64,
    pub streams_per_agent: u32,
    pub streams_per_minute: u32,
    pub bytes_per_stream: u64,
    pub wall_s: f64,
    /// Filled in once the run has removed (or kept) what it made.
    pub cleanup: Option<Cleanup>,
    pub timeline: Vec<Point>,
}

/// How the run was set up.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub app: String,
    pub duration: Duration,
    pub ramp: Duration,
    pub streams_per_agent: u32,
    pub streams_per_minute: u32,
    pub bytes_per_stream: u64,
    pub started_at: String,
    pub broker: Broker,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn summarise(outcomes: &[Outcome], settings: &Settings, wall: Duration) -> Summary {
    let connected: Vec<&Outcome> = outcomes.iter().filter(|o| o.connected.is_some()).collect();
    let mut errors = BTreeMap::new();
    for o in outcomes {
        for (_, e) in &o.errors {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
    }
    let bytes_verified: u64 = outcomes.iter().map(|o| o.bytes_verified).sum();
    let (timeline, throughput) = timeline(outcomes, settings.bytes_per_stream, wall);
    let mut s = Summary {
        started_at: settings.started_at.clone(),
        broker: settings.broker.clone(),
        verdict: Verdict::default(),
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
        handshake_ms: percentiles(
            outcomes
                .iter()
                .filter_map(|o| o.handshake.map(ms))
                .collect(),
        ),
        sign_in_ms: percentiles(outcomes.iter().filter_map(|o| o.sign_in.map(ms)).collect()),
        session_ms: percentiles(outcomes.iter().filter_map(|o| o.session.map(ms)).collect()),
        stream_open_ms: percentiles(
            outcomes
                .iter()
                .flat_map(|o| o.streams_ok.iter().map(|s| ms(s.2)))
                .collect(),
        ),
        streams_ok: outcomes.iter().map(|o| o.streams_ok.len() as u64).sum(),
        streams_failed: outcomes.iter().map(|o| o.streams_failed).sum(),
        bytes_verified,
        throughput_bytes_per_s: throughput.mean_bytes_per_s,
        throughput,
        errors,
        app: settings.app.clone(),
        duration_s: settings.duration.as_secs_f64(),
        ramp_s: settings.ramp.as_secs_f64(),
        streams_per_agent: settings.streams_per_agent,
        streams_per_minute: settings.streams_per_minute,
        bytes_per_stream: settings.bytes_per_stream,
        wall_s: (wall.as_secs_f64() * 10.0).round() / 10.0,
        cleanup: None,
        timeline,
    };
    s.verdict = verdict(&s);
    s
}

/// The run second by second, and the throughput those seconds show.
fn timeline(
    outcomes: &[Outcome],
    bytes_per_stream: u64,
    wall: Duration,
) -> (Vec<Point>, Throughput) {
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
    let mut opens: Vec<Vec<f64>> = vec![Vec::new(); last + 1];
    let mut bytes = vec![0.0f64; last + 1];
    let mut ran = vec![false; last + 1];
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
        for &(started, finished, opened) in &o.streams_ok {
            timeline[slot(finished)].streams += 1;
            opens[slot(finished)].push(ms(opened));
            // Each stream's bytes over the seconds it ran, in proportion.
            let (a, b) = (
                started.as_secs_f64(),
                finished.as_secs_f64().max(started.as_secs_f64()),
            );
            let (first, end) = (slot(started), slot(finished));
            for (i, slot_bytes) in bytes.iter_mut().enumerate().take(end + 1).skip(first) {
                ran[i] = true;
                let share = if b > a {
                    let (lo, hi) = (a.max(i as f64), b.min(i as f64 + 1.0));
                    (hi - lo).max(0.0) / (b - a)
                } else {
                    1.0
                };
                *slot_bytes += bytes_per_stream as f64 * share;
            }
        }
        for (at, _) in &o.errors {
            timeline[slot(*at)].errors += 1;
        }
    }
    let mut throughput = Throughput::default();
    let mut total = 0.0;
    for (i, p) in timeline.iter_mut().enumerate() {
        let c = std::mem::take(&mut connects[i]);
        let s = std::mem::take(&mut opens[i]);
        p.connect_p99_ms = (!c.is_empty()).then(|| percentiles(c).p99);
        p.stream_open_p99_ms = (!s.is_empty()).then(|| percentiles(s).p99);
        if ran[i] {
            let b = bytes[i].round();
            p.bytes_per_s = Some(b as u64);
            total += b;
            throughput.measured_s += 1;
            if b > throughput.peak_bytes_per_s {
                throughput.peak_bytes_per_s = b;
                throughput.peak_second = Some(p.second);
            }
        }
    }
    throughput.mean_bytes_per_s = (total / throughput.measured_s.max(1) as f64).round();
    (timeline, throughput)
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

/// Whether the run passed (every agent connected and stayed, every stream
/// checked), in one line with the figures that matter.
fn verdict(s: &Summary) -> Verdict {
    let ok = s.agents_failed == 0 && s.agents_lost == 0 && s.streams_failed == 0;
    let mut parts = vec![if s.agents_failed == 0 {
        format!(
            "{} of {} simulated staff connected",
            count(s.agents_connected),
            count(s.agents_requested)
        )
    } else {
        format!(
            "{} of {} simulated staff connected ({} failed)",
            count(s.agents_connected),
            count(s.agents_requested),
            count(s.agents_failed)
        )
    }];
    if s.agents_connected > 0 {
        parts.push(format!("connect p99 {}", human_ms(s.connect_ms.p99)));
    }
    if s.streams_ok > 0 {
        parts.push(format!(
            "stream open p99 {}",
            human_ms(s.stream_open_ms.p99)
        ));
    }
    if s.drops > 0 {
        parts.push(if s.agents_lost == 0 {
            format!(
                "{} dropped connections, all back (p99 {})",
                count(s.drops),
                human_ms(s.reconnect_ms.p99)
            )
        } else {
            format!(
                "{} dropped connections, {} agents still down at the end",
                count(s.drops),
                count(s.agents_lost)
            )
        });
    }
    if s.streams_failed > 0 {
        parts.push(format!(
            "{} of {} streams failed",
            count(s.streams_failed),
            count(s.streams_failed + s.streams_ok)
        ));
    }
    let errors: u64 = s.errors.values().sum();
    if errors == 0 {
        parts.push("no errors".into());
    } else if let Some((kind, n)) = s.errors.iter().max_by_key(|(_, n)| **n) {
        parts.push(format!(
            "{} errors, most often \u{201c}{kind}\u{201d} ({})",
            count(errors),
            count(*n)
        ));
    }
    Verdict {
        ok,
        headline: parts.join("; "),
    }
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const BINARY_UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// The binary unit that suits `bytes`: its divisor and name.
fn byte_unit(bytes: f64) -> (f64, &'static str) {
    let mut div = 1.0;
    let mut i = 0;
    while bytes / div >= 1024.0 && i < BINARY_UNITS.len() - 1 {
        div *= 1024.0;
        i += 1;
    }
    (div, BINARY_UNITS[i])
}

/// A number with as many decimals as it needs to read well (three
/// significant digits, no trailing `.0`).
fn short(v: f64) -> String {
    let text = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `131072000` bytes as `125 MiB`.
pub fn human_bytes(bytes: f64) -> String {
    let (div, unit) = byte_unit(bytes);
    format!("{} {unit}", short(bytes / div))
}

/// Bytes per second as `6.6 MiB/s`.
pub fn human_rate(bytes_per_s: f64) -> String {
    format!("{}/s", human_bytes(bytes_per_s))
}

/// Milliseconds as `0.43 ms`, `31 ms`, `1,250 ms` or `12.5 s`.
pub fn human_ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{} s", short(v / 1000.0))
    } else if v >= 100.0 {
        format!("{} ms", count(v.round() as u64))
    } else {
        format!("{} ms", short(v))
    }
}

/// Seconds as `45 s`, `2 min` or `1 h 5 min`.
pub fn human_secs(s: f64) -> String {
    let whole = s.round() as u64;
    match whole {
        0..=119 => format!("{} s", short(s)),
        120..=3599 if whole.is_multiple_of(60) => format!("{} min", whole / 60),
        120..=3599 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, whole % 3600 / 60),
    }
}

fn pct_line(p: &Percentiles) -> String {
    format!(
        "p50 {} · p95 {} · p99 {} · max {}",
        human_ms(p.p50),
        human_ms(p.p95),
        human_ms(p.p99),
        human_ms(p.max)
    )
}

/// The throughput in words, as both the summary and the chart state it.
fn throughput_line(s: &Summary) -> String {
    let t = &s.throughput;
    match t.peak_second {
        None => "no streams ran".into(),
        Some(at) => format!(
            "mean {} over the {} in which streams ran; peak {} at {} s",
            human_rate(t.mean_bytes_per_s),
            human_secs(t.measured_s as f64),
            human_rate(t.peak_bytes_per_s),
            at
        ),
    }
}

fn broker_line(b: &Broker) -> String {
    let mut parts = vec![b.url.clone()];
    parts.push(match &b.version {
        Some(v) => format!("version {v}"),
        None => "version unknown".into(),
    });
    if let Some(node) = &b.node {
        parts.push(format!("node {node}"));
    }
    parts.push(match b.capacity {
        Some(c) => format!("capacity {} agent sessions", count(c)),
        None => "capacity unknown".into(),
    });
    parts.join(", ")
}

fn cleanup_line(c: &Cleanup) -> String {
    let mut made = vec![format!("person {}", c.person), format!("group {}", c.group)];
    if let Some(app) = &c.app {
        made.push(format!("app {app}"));
    }
    match c.outcome.as_str() {
        "kept" => format!(
            "kept for inspection (--keep): {} and the devices it enrolled",
            made.join(", ")
        ),
        "removed" => format!(
            "removed after the run: {}, {} enrolled devices",
            made.join(", "),
            count(c.devices_removed)
        ),
        _ => format!("not all removed: {}", c.problems.join("; ")),
    }
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
        "verdict            {}: {}",
        if s.verdict.ok { "PASS" } else { "FAIL" },
        s.verdict.headline
    );
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
        count(s.streams_ok),
        count(s.streams_failed)
    );
    let _ = writeln!(
        out,
        "bytes verified     {} ({} bytes)",
        human_bytes(s.bytes_verified as f64),
        count(s.bytes_verified)
    );
    let _ = writeln!(out, "throughput         {}", throughput_line(s));
    if s.errors.is_empty() {
        let _ = writeln!(out, "errors             none");
    } else {
        let _ = writeln!(out, "errors");
        for (kind, n) in &s.errors {
            let _ = writeln!(out, "  {n:>6}  {kind}");
        }
    }
    let _ = writeln!(out, "broker             {}", broker_line(&s.broker));
    if let Some(c) = &s.cleanup {
        let _ = writeln!(out, "test identities    {}", cleanup_line(c));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick step for `max` near `want` ticks: 1, 2, 2.5 or 5 times a power
/// of ten (whole numbers only for counts).
fn nice_step(max: f64, want: f64, whole: bool) -> f64 {
    let raw = (max / want).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    if whole {
        step.max(1.0).round()
    } else {
        step
    }
}

fn tick_label(v: f64, step: f64) -> String {
    if step.fract() == 0.0 {
        count(v.round() as u64)
    } else {
        let decimals = (-step.log10()).ceil().max(0.0) as usize + 1;
        let text = format!("{v:.decimals$}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// One chart: a value per second, `None` where nothing was measured.
struct Chart<'a> {
    /// For the page's ids and for tests.
    id: &'a str,
    title: &'a str,
    /// What is measured and when; says why there may be gaps.
    note: String,
    /// The y axis's unit, e.g. `ms`.
    unit: String,
    values: Vec<Option<f64>>,
    whole: bool,
    colour: &'a str,
    /// A dashed line across the chart: (value, label).
    mean: Option<(f64, String)>,
    /// A labelled marker: (second, value, label).
    peak: Option<(u64, f64, String)>,
    /// Said across the chart when every measured value is zero.
    all_zero: Option<&'a str>,
}

/// The run's phases, in seconds: ramp, then hold.
#[derive(Clone, Copy)]
struct Phases {
    ramp: f64,
    hold_end: f64,
}

const W: f64 = 960.0;
const H: f64 = 290.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = W - 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = H - 48.0;

/// An inline SVG line chart with a zero, gridlines, units on both axes,
/// the run's phases, and a hatched "no data" band wherever nothing was
/// measured (never a line drawn at zero).
fn chart(c: &Chart<'_>, phases: Phases) -> String {
    let n = c.values.len().max(1) as f64;
    let x = |s: f64| LEFT + s / n * (RIGHT - LEFT);
    let max = c
        .values
        .iter()
        .flatten()
        .copied()
        .chain(c.mean.as_ref().map(|m| m.0))
        .fold(0.0, f64::max);
    let step = if max > 0.0 {
        nice_step(max, 4.0, c.whole)
    } else {
        1.0
    };
    let top = (max / step).ceil().max(1.0) * step;
    let y = |v: f64| BOTTOM - v / top * (BOTTOM - TOP);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg viewBox="0 0 {W} {H}" role="img" aria-labelledby="{id}-title" data-chart="{id}" data-zero-y="{zero:.2}">
<defs><pattern id="{id}-hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#f6f7f9"/><line x1="0" y1="0" x2="0" y2="8" stroke="#d8dce1" stroke-width="3"/></pattern></defs>
"##,
        id = c.id,
        zero = y(0.0),
    );
    // The phases.
    let ramp_x = x(phases.ramp.min(n));
    let hold_x = x(phases.hold_end.min(n));
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{w:.2}" height="{h:.2}" fill="#eef4fb"/>"##,
        w = (ramp_x - LEFT).max(0.0),
        h = BOTTOM - TOP,
    );
    for (label, from, to) in [
        ("ramp", LEFT, ramp_x),
        ("hold", ramp_x, hold_x),
        ("end", hold_x, RIGHT),
    ] {
        if to - from >= 36.0 {
            let _ = write!(
                svg,
                r##"<text x="{:.2}" y="{}" text-anchor="middle" class="phase">{label}</text>"##,
                (from + to) / 2.0,
                TOP - 8.0
            );
        }
    }
    // Horizontal gridlines and the y axis's labels.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.2}" x2="{RIGHT}" y2="{yy:.2}" stroke="{stroke}"/><text x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"##,
            LEFT - 8.0,
            y(v) + 4.0,
            tick_label(v, step),
            yy = y(v),
            stroke = if v == 0.0 { "#57606a" } else { "#e3e6ea" },
        );
        v += step;
    }
    // Vertical gridlines and the x axis's labels (seconds).
    let x_step = [
        1u64, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600,
    ]
    .into_iter()
    .find(|s| n / *s as f64 <= 12.0)
    .unwrap_or(7200);
    let mut s = 0;
    while s as f64 <= n {
        let xx = x(s as f64);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.2}" y1="{TOP}" x2="{xx:.2}" y2="{BOTTOM}" stroke="#eef0f2"/><text x="{xx:.2}" y="{:.2}" text-anchor="middle">{s}</text>"##,
            BOTTOM + 16.0
        );
        s += x_step;
    }
    let _ = write!(
        svg,
        r##"<text x="{:.2}" y="{:.2}" text-anchor="middle" class="axis">seconds since the run started</text>
<text x="16" y="{:.2}" text-anchor="middle" class="axis" transform="rotate(-90 16 {:.2})">{}</text>
"##,
        (LEFT + RIGHT) / 2.0,
        H - 8.0,
        (TOP + BOTTOM) / 2.0,
        (TOP + BOTTOM) / 2.0,
        escape(&c.unit),
    );
    // Gaps: nothing measured.
    let mut i = 0;
    while i < c.values.len() {
        if c.values[i].is_some() {
            i += 1;
            continue;
        }
        let start = i;
        while i < c.values.len() && c.values[i].is_none() {
            i += 1;
        }
        let (x0, x1) = (x(start as f64), x(i as f64));
        let _ = write!(
            svg,
            r##"<rect class="nodata" x="{x0:.2}" y="{TOP}" width="{:.2}" height="{:.2}" fill="url(#{id}-hatch)"/>"##,
            x1 - x0,
            BOTTOM - TOP,
            id = c.id,
        );
        if x1 - x0 >= 64.0 {
            let (cx, cy) = ((x0 + x1) / 2.0, (TOP + BOTTOM) / 2.0);
            let _ = write!(
                svg,
                r##"<rect x="{:.2}" y="{:.2}" width="60" height="20" rx="3" fill="#fff" stroke="#d0d7de"/><text x="{cx:.2}" y="{:.2}" text-anchor="middle" class="nodata-label">no data</text>"##,
                cx - 30.0,
                cy - 10.0,
                cy + 4.5
            );
        }
    }
    // The axes over the bands: zero and time.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#57606a"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#57606a"/>"##
    );
    // The data, broken wherever nothing was measured; a lone measured
    // second is a dot.
    let mut d = String::new();
    let mut dots = String::new();
    for (i, v) in c.values.iter().enumerate() {
        let Some(v) = v else { continue };
        let prev = i > 0 && c.values[i - 1].is_some();
        let next = c.values.get(i + 1).is_some_and(Option::is_some);
        let (px, py) = (x(i as f64 + 0.5), y(*v));
        if !prev && !next {
            let _ = write!(
                dots,
                r##"<circle cx="{px:.2}" cy="{py:.2}" r="2.5" fill="{}"/>"##,
                c.colour
            );
        }
        let _ = write!(d, "{}{px:.2},{py:.2} ", if prev { "L" } else { "M" });
    }
    let _ = write!(
        svg,
        r##"<path class="data" d="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"/>{dots}"##,
        d.trim_end(),
        c.colour
    );
    if let Some(text) = c.all_zero {
        if c.values.iter().flatten().all(|v| *v == 0.0) {
            let _ = write!(
                svg,
                r##"<text x="{:.2}" y="{:.2}" text-anchor="middle" class="mark">{}</text>"##,
                (LEFT + RIGHT) / 2.0,
                (TOP + BOTTOM) / 2.0,
                escape(text)
            );
        }
    }
    if let Some((v, label)) = &c.mean {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.2}" x2="{RIGHT}" y2="{yy:.2}" stroke="#24292f" stroke-dasharray="6 4"/><text x="{:.2}" y="{:.2}" class="mark">{}</text>"##,
            LEFT + 6.0,
            y(*v) - 6.0,
            escape(label),
            yy = y(*v),
        );
    }
    if let Some((at, v, label)) = &c.peak {
        let (px, py) = (x(*at as f64 + 0.5), y(*v));
        let anchor = if px > (LEFT + RIGHT) / 2.0 {
            "end"
        } else {
            "start"
        };
        let _ = write!(
            svg,
            r##"<circle cx="{px:.2}" cy="{py:.2}" r="4" fill="none" stroke="#24292f" stroke-width="1.5"/><text x="{:.2}" y="{:.2}" text-anchor="{anchor}" class="mark">{}</text>"##,
            if anchor == "end" { px - 8.0 } else { px + 8.0 },
            (py - 6.0).max(TOP + 10.0),
            escape(label),
        );
    }
    svg.push_str("</svg>");
    format!(
        r#"<figure id="{id}"><figcaption><span id="{id}-title">{title}</span> <span class="unit">({unit})</span><span class="note">{note}</span></figcaption>{svg}</figure>
"#,
        id = c.id,
        title = escape(c.title),
        unit = escape(&c.unit),
        note = escape(&c.note),
    )
}

/// The HTML report: the verdict first, then the figures, the charts over
/// time, errors and how the run was set up. Self-contained: no scripts,
/// no fonts, no external files.
pub fn html(s: &Summary) -> String {
    let phases = Phases {
        ramp: s.ramp_s,
        hold_end: s.ramp_s + s.duration_s,
    };
    let peak = s.throughput.peak_bytes_per_s;
    let (div, unit) = byte_unit(peak.max(1.0));
    let connected = Chart {
        id: "connected",
        title: "Connected agents",
        note: "Simulated staff with a live session, second by second.".into(),
        unit: "agents".into(),
        values: s
            .timeline
            .iter()
            .map(|p| Some(p.connected as f64))
            .collect(),
        whole: true,
        colour: "#0969da",
        mean: None,
        peak: None,
        all_zero: None,
    };
    let connect = Chart {
        id: "connect_p99",
        title: "Connect time, p99",
        note: "Mutual-TLS QUIC handshake and session hello, of the agents that connected in each second. Measured only when agents connect (the ramp, and any reconnect): where none did there is no data, not zero.".into(),
        unit: "ms".into(),
        values: s.timeline.iter().map(|p| p.connect_p99_ms).collect(),
        whole: false,
        colour: "#8250df",
        mean: None,
        peak: None,
        all_zero: None,
    };
    let open = Chart {
        id: "stream_open_p99",
        title: "Stream open time, p99",
        note: format!(
            "From opening a tunnel stream to the broker's answer, of the streams that finished in each second: {} at connect, then {} a minute per agent while connected.",
            s.streams_per_agent, s.streams_per_minute
        ),
        unit: "ms".into(),
        values: s.timeline.iter().map(|p| p.stream_open_p99_ms).collect(),
        whole: false,
        colour: "#bf3989",
        mean: None,
        peak: None,
        all_zero: None,
    };
    let throughput = Chart {
        id: "throughput",
        title: "Throughput, verified",
        note: format!(
            "Bytes sent through the tunnels and checked on the way back, each stream's spread over the time it ran. {}.",
            capitalise(&throughput_line(s))
        ),
        unit: format!("{unit}/s"),
        values: s
            .timeline
            .iter()
            .map(|p| p.bytes_per_s.map(|b| b as f64 / div))
            .collect(),
        whole: false,
        colour: "#1a7f37",
        mean: s.throughput.peak_second.map(|_| {
            (
                s.throughput.mean_bytes_per_s / div,
                format!("mean {}", human_rate(s.throughput.mean_bytes_per_s)),
            )
        }),
        peak: s
            .throughput
            .peak_second
            .map(|at| (at, peak / div, format!("peak {}", human_rate(peak)))),
        all_zero: None,
    };
    let errors = Chart {
        id: "errors",
        title: "Errors",
        note: if s.errors.is_empty() {
            "Failed enrolments, sign-ins, connections and streams: none in this run.".into()
        } else {
            "Failed enrolments, sign-ins, connections and streams; by kind below.".into()
        },
        unit: "errors per second".into(),
        values: s.timeline.iter().map(|p| Some(p.errors as f64)).collect(),
        whole: true,
        colour: "#cf222e",
        mean: None,
        peak: None,
        all_zero: Some("no errors"),
    };
    let charts: String = [connected, connect, open, throughput, errors]
        .iter()
        .map(|c| chart(c, phases))
        .collect();

    let mut errors = String::new();
    for (kind, n) in &s.errors {
        let _ = write!(
            errors,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(kind),
            count(*n)
        );
    }
    if errors.is_empty() {
        errors.push_str("<tr><td colspan=\"2\">none</td></tr>");
    }
    let drops = if s.drops == 0 {
        "none".to_owned()
    } else {
        format!(
            "{} dropped, {} came back ({}), {} agents still down at the end",
            count(s.drops),
            count(s.reconnects),
            pct_line(&s.reconnect_ms),
            count(s.agents_lost)
        )
    };
    let share = s
        .broker
        .capacity
        .filter(|c| *c > 0)
        .map(|c| {
            let share = s.agents_requested as f64 * 100.0 / c as f64;
            format!(
                " ({} % of the broker's capacity)",
                if share < 10.0 {
                    format!("{share:.1}")
                } else {
                    format!("{share:.0}")
                }
            )
        })
        .unwrap_or_default();
    let cleanup = s
        .cleanup
        .as_ref()
        .map(|c| {
            format!(
                "<tr><th>Test identities</th><td>{}</td></tr>",
                escape(&cleanup_line(c))
            )
        })
        .unwrap_or_default();
    let date = s.started_at.replace('T', " ").replace('Z', " UTC");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lanyard stress run, {date}</title>
<style>
body{{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328;margin:2rem auto;max-width:62rem;padding:0 1.25rem}}
h1{{font-size:1.6rem;margin:0 0 .2rem}} h2{{font-size:1.15rem;margin:2rem 0 .6rem}}
.meta{{color:#57606a;margin:0}}
.verdict{{border-left:6px solid;border-radius:4px;padding:.8rem 1rem;margin:1.2rem 0 .4rem;font-size:1.2rem;font-weight:600}}
.verdict.ok{{border-color:#1a7f37;background:#e6f4ea}} .verdict.bad{{border-color:#cf222e;background:#fdecea}}
.verdict .label{{display:inline-block;margin-right:.6rem;padding:0 .45rem;border-radius:3px;color:#fff;font-size:.85rem;vertical-align:.15rem}}
.verdict.ok .label{{background:#1a7f37}} .verdict.bad .label{{background:#cf222e}}
.scope{{color:#57606a;margin:0 0 1rem}}
table{{border-collapse:collapse;width:100%}}
th,td{{padding:.4rem .9rem .4rem 0;text-align:left;vertical-align:top;border-bottom:1px solid #eaeef2}}
th{{font-weight:600;white-space:nowrap;width:13rem}} td.num{{font-variant-numeric:tabular-nums}}
figure{{margin:0 0 1.6rem}} figcaption{{font-weight:600;margin-bottom:.3rem}}
figcaption .unit{{font-weight:400;color:#57606a}}
figcaption .note{{display:block;font-weight:400;color:#57606a;font-size:.88rem}}
svg{{display:block;width:100%;height:auto}}
svg text{{font:12px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#57606a}}
svg text.axis{{font-size:12px;fill:#24292f}} svg text.phase{{font-size:11px;letter-spacing:.04em;text-transform:uppercase}}
svg text.nodata-label{{font-size:13px;fill:#6e7781}} svg text.mark{{fill:#24292f;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}}
.legend{{color:#57606a;font-size:.88rem}} .swatch{{display:inline-block;width:1.6em;height:.9em;vertical-align:-.1em;border:1px solid #d0d7de;margin:0 .3em 0 .8em}}
</style></head><body>
<h1>Lanyard stress run</h1>
<p class="meta">{date} · broker {broker}</p>
<p class="verdict {class}"><span class="label">{label}</span>{headline}</p>
<p class="scope">{agents} simulated staff{share} started over {ramp} and stayed connected for {hold}, each opening {k} tunnel {streams_word} of {b} at connect and {spm} a minute after that, against app <code>{app}</code>.</p>
<h2>Figures</h2>
<table>
<tr><th>Simulated staff</th><td>{agents} requested, {connected} connected, {failed} failed</td></tr>
<tr><th>Connect time</th><td class="num">{connect}</td></tr>
<tr><th>Stream open time</th><td class="num">{open}</td></tr>
<tr><th>Streams</th><td class="num">{streams_ok} checked, {streams_failed} failed</td></tr>
<tr><th>Data verified</th><td class="num">{bytes} ({bytes_exact} bytes), every byte compared on the way back</td></tr>
<tr><th>Throughput</th><td class="num">{throughput}</td></tr>
<tr><th>Dropped connections</th><td>{drops}</td></tr>
<tr><th>Errors</th><td>{error_count}</td></tr>
{cleanup}</table>
<h2>Over time</h2>
<p class="legend">Times are seconds since the run started.<span class="swatch" style="background:#eef4fb"></span>ramp (agents still starting)<span class="swatch" style="background:repeating-linear-gradient(45deg,#f6f7f9 0 3px,#d8dce1 3px 5px)"></span>no data: nothing measured in that second (not zero)</p>
{charts}
<h2>Errors by kind</h2>
<table><tr><th>kind</th><th>count</th></tr>{errors}</table>
<h2>Run</h2>
<table>
<tr><th>Started</th><td>{date}</td></tr>
<tr><th>Broker</th><td>{broker}</td></tr>
<tr><th>Agents</th><td>{agents}, started evenly over {ramp}</td></tr>
<tr><th>Hold</th><td>{hold} once all have started</td></tr>
<tr><th>Streams</th><td>{k} at connect, then {spm} a minute per agent, {b} each</td></tr>
<tr><th>App</th><td><code>{app}</code></td></tr>
<tr><th>Wall time</th><td>{wall}</td></tr>
</table>
</body></html>
"#,
        class = if s.verdict.ok { "ok" } else { "bad" },
        label = if s.verdict.ok { "PASS" } else { "FAIL" },
        headline = escape(&s.verdict.headline),
        broker = escape(&broker_line(&s.broker)),
        agents = count(s.agents_requested),
        connected = count(s.agents_connected),
        failed = count(s.agents_failed),
        ramp = human_secs(s.ramp_s),
        hold = human_secs(s.duration_s),
        k = s.streams_per_agent,
        streams_word = if s.streams_per_agent == 1 {
            "stream"
        } else {
            "streams"
        },
        spm = s.streams_per_minute,
        b = human_bytes(s.bytes_per_stream as f64),
        app = escape(&s.app),
        connect = pct_line(&s.connect_ms),
        open = pct_line(&s.stream_open_ms),
        streams_ok = count(s.streams_ok),
        streams_failed = count(s.streams_failed),
        bytes = human_bytes(s.bytes_verified as f64),
        bytes_exact = count(s.bytes_verified),
        throughput = escape(&throughput_line(s)),
        error_count = if s.errors.is_empty() {
            "none".to_owned()
        } else {
            count(s.errors.values().sum())
        },
        wall = human_secs(s.wall_s),
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secs: u64, ramp: u64, streams: u32, bytes: u64) -> Settings {
        Settings {
            app: "echo".into(),
            duration: Duration::from_secs(secs),
            ramp: Duration::from_secs(ramp),
            streams_per_agent: streams,
            streams_per_minute: 6,
            bytes_per_stream: bytes,
            started_at: "2026-01-02T03:04:05Z".into(),
            broker: Broker {
                url: "https://127.0.0.1:1".into(),
                version: Some("9.8.7".into()),
                node: Some("n1".into()),
                capacity: Some(5000),
            },
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(percentiles(vec![]), Percentiles::default());
        assert_eq!(percentiles(vec![7.0]).p99, 7.0);
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(human_bytes(131_072_000.0), "125 MiB");
        assert_eq!(human_bytes(65_536.0), "64 KiB");
        assert_eq!(human_bytes(6.6 * 1024.0 * 1024.0), "6.6 MiB");
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_rate(1_677_722.0), "1.6 MiB/s");
        assert_eq!(human_ms(31.04), "31 ms");
        assert_eq!(human_ms(0.432), "0.43 ms");
        assert_eq!(human_ms(1250.0), "1,250 ms");
        assert_eq!(human_ms(12_500.0), "12.5 s");
        assert_eq!(human_secs(60.0), "60 s");
        assert_eq!(human_secs(300.0), "5 min");
        assert_eq!(count(3_276_800), "3,276,800");
        assert_eq!(nice_step(131.0, 4.0, false), 50.0);
        assert_eq!(nice_step(3.0, 4.0, true), 1.0);
    }

    #[test]
    fn a_summary_counts_what_happened_and_charts_it() {
        let ok = Outcome {
            connected: Some((Duration::from_millis(500), Duration::from_millis(12))),
            handshake: Some(Duration::from_millis(3)),
            sign_in: Some(Duration::from_millis(8)),
            session: Some(Duration::from_millis(1)),
            disconnected_at: Some(Duration::from_secs(3)),
            streams_ok: vec![(
                Duration::from_millis(1400),
                Duration::from_millis(1500),
                Duration::from_millis(2),
            )],
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
            &settings(3, 1, 1, 1000),
            Duration::from_secs(3),
        );
        assert_eq!((s.agents_connected, s.agents_failed), (1, 1));
        assert_eq!((s.streams_ok, s.bytes_verified), (1, 1000));
        assert_eq!(s.errors["refused: at capacity"], 1);
        assert_eq!(s.connect_ms.p50, 12.0);
        assert_eq!(s.timeline[1].bytes_per_s, Some(1000));
        assert_eq!(s.timeline[1].streams, 1);
        assert_eq!(s.timeline[1].stream_open_p99_ms, Some(2.0));
        assert_eq!(s.timeline[0].connected, 1);
        assert_eq!(s.timeline[1].errors, 1);
        // Nothing was measured in these seconds: no value, not zero.
        assert_eq!(s.timeline[0].bytes_per_s, None);
        assert_eq!(s.timeline[1].connect_p99_ms, None);
        assert_eq!(s.timeline[2].stream_open_p99_ms, None);
        assert_eq!(s.timeline[0].connect_p99_ms, Some(12.0));
        assert!(!s.verdict.ok);
        assert!(
            s.verdict
                .headline
                .starts_with("1 of 2 simulated staff connected (1 failed); connect p99 12 ms"),
            "{}",
            s.verdict.headline
        );
        let page = html(&s);
        assert_eq!(page.matches("<svg").count(), 5, "charts");
        assert!(page.contains("refused: at capacity"));
        assert!(page.contains("version 9.8.7"));
        assert!(page.contains("capacity 5,000 agent sessions"));
        assert!(page.contains("2026-01-02 03:04:05 UTC"));
        assert!(!page.contains("<script"), "self-contained");
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
            "verdict",
            "broker",
            "throughput",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(json["connect_ms"].get("p95").is_some());
        assert!(json["timeline"][1]["connect_p99_ms"].is_null());
        assert_eq!((s.drops, s.reconnects, s.agents_lost), (0, 0, 0));
        assert!(!table(&s).contains("dropped"));
    }

    #[test]
    fn throughput_spreads_each_stream_over_the_seconds_it_ran() {
        let secs = Duration::from_secs;
        let long = Outcome {
            connected: Some((secs(0), Duration::from_millis(5))),
            disconnected_at: Some(secs(6)),
            // 4,000 bytes from 1.5 s to 3.5 s; nothing from 4 s.
            streams_ok: vec![(
                Duration::from_millis(1500),
                Duration::from_millis(3500),
                Duration::from_millis(3),
            )],
            bytes_verified: 4000,
            ..Outcome::default()
        };
        let s = summarise(&[long], &settings(6, 0, 1, 4000), secs(6));
        let rates: Vec<Option<u64>> = s.timeline.iter().map(|p| p.bytes_per_s).collect();
        assert_eq!(rates[..5], [None, Some(1000), Some(2000), Some(1000), None]);
        assert_eq!(s.throughput.measured_s, 3);
        assert_eq!(s.throughput.peak_bytes_per_s, 2000.0);
        assert_eq!(s.throughput.peak_second, Some(2));
        assert_eq!(s.throughput.mean_bytes_per_s, 1333.0);
        assert_eq!(s.throughput_bytes_per_s, 1333.0);
        // The summary states what the chart draws.
        let page = html(&s);
        let line = "mean 1.3 KiB/s over the 3 s in which streams ran; peak 1.95 KiB/s at 2 s";
        assert!(table(&s).contains(line), "{}", table(&s));
        assert!(page.contains(line));
        let chart = &page[page.find("id=\"throughput\"").unwrap()..];
        assert!(chart.contains(">mean 1.3 KiB/s<") && chart.contains(">peak 1.95 KiB/s<"));
    }

    #[test]
    fn a_chart_leaves_a_gap_where_nothing_was_measured() {
        let c = Chart {
            id: "t",
            title: "T",
            note: String::new(),
            unit: "ms".into(),
            values: vec![
                Some(10.0),
                Some(20.0),
                None,
                None,
                None,
                None,
                None,
                None,
                Some(5.0),
            ],
            whole: false,
            colour: "#000",
            mean: None,
            peak: None,
            all_zero: None,
        };
        let svg = chart(
            &c,
            Phases {
                ramp: 2.0,
                hold_end: 8.0,
            },
        );
        let zero: f64 = attr(&svg, "data-zero-y").parse().unwrap();
        let d = attr(&svg[svg.find("class=\"data\"").unwrap()..], "d");
        // Two runs of data: two moves, and no point on the zero line.
        assert_eq!(d.matches('M').count(), 2, "{d}");
        for point in d.split(['M', 'L']).filter(|p| !p.trim().is_empty()) {
            let y: f64 = point.trim().split(',').nth(1).unwrap().parse().unwrap();
            assert!((y - zero).abs() > 0.5, "{point} drawn at zero");
        }
        assert_eq!(svg.matches("class=\"nodata\"").count(), 1);
        assert!(svg.contains(">no data<"));
        assert!(svg.contains("<circle"), "the lone last second is a dot");
        assert!(svg.contains(">ms<"), "unit on the y axis");
        assert!(svg.contains(">seconds since the run started<"));
        assert!(svg.contains(">0<"), "a zero on the y axis");
    }

    fn attr<'a>(s: &'a str, name: &str) -> &'a str {
        let start = s.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        &s[start..start + s[start..].find('"').unwrap()]
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
        let s = summarise(&[bouncy, steady], &settings(8, 0, 0, 0), secs(8));
        assert_eq!((s.drops, s.reconnects, s.agents_lost), (2, 1, 1));
        assert_eq!(s.reconnect_ms.max, 2000.0);
        let connected: Vec<u64> = s.timeline.iter().map(|p| p.connected).collect();
        assert_eq!(connected[..9], [2, 2, 2, 1, 2, 2, 2, 1, 1]);
        assert!(table(&s).contains("dropped            2 times, 1 back, 1 agents still down"));
        assert!(s
            .verdict
            .headline
            .contains("2 dropped connections, 1 agents still down"));
        assert!(!s.verdict.ok);
    }
}
