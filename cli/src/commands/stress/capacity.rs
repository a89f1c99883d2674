//! `lanyard stress --find-capacity`: runs of more and more simulated agents
//! until an objective breaks, and the knee: the most agents held within the
//! objectives, and what gave out first.
//!
//! Each step is a whole run (its own test identities, removed after it):
//! every agent enrols and signs in (one password check each) within the
//! ramp, then holds for `--duration` with streams coming and going. So the
//! knee is that of a morning when everyone connects within the ramp,
//! sign-ins included, and the report says so. With `--signed-in` the
//! agents enrol and sign in before the step's clock starts, and the knee is
//! that of the usual morning: agents that already hold a sign-in connect
//! (handshake and session only).

use serde::Serialize;

use super::{measured, report, StressArgs};
use crate::client::Client;
use crate::output::Out;
use crate::CliError;

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub agents: u32,
    pub connected: u64,
    pub failed: u64,
    pub connect_p99_ms: f64,
    pub handshake_p99_ms: f64,
    pub sign_in_p99_ms: f64,
    pub session_p99_ms: f64,
    pub stream_open_p99_ms: f64,
    pub throughput_bytes_per_s: f64,
    /// Within every objective, with no agent failing.
    pub within: bool,
    /// Why not, when not.
    pub broke: Option<String>,
}

/// The outcome of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Knee {
    pub headline: String,
    /// The most agents held within the objectives (0: not even the first step).
    pub agents: u32,
    pub throughput_bytes_per_s: f64,
    /// What gave out first (None: nothing did up to --max-agents).
    pub gave_out: Option<String>,
    pub slo_connect_p99_ms: f64,
    pub slo_stream_p99_ms: f64,
    pub identities: String,
    pub steps: Vec<Step>,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What, if anything, broke in a step: the first limit passed, named by
/// what gave out.
fn judge(s: &report::Summary, args: &StressArgs) -> Option<(String, String)> {
    if s.agents_failed > 0 {
        let mut errors: Vec<(&String, &u64)> = s.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1));
        let top = errors.first().map(|(e, _)| e.as_str()).unwrap_or("");
        let what = if top.contains("capacity") {
            "the broker's admission limit"
        } else if top.starts_with("sign-in") {
            "sign-ins"
        } else if top.starts_with("enrol") {
            "enrolments"
        } else if top.starts_with("connect") {
            "handshakes"
        } else {
            "connections"
        };
        return Some((
            what.into(),
            format!(
                "{} of {} agents failed ({top})",
                s.agents_failed, s.agents_requested
            ),
        ));
    }
    let connect_slo = ms(args.slo_connect_p99);
    if s.connect_ms.p99 > connect_slo {
        // Which part of a connect took the time.
        let parts = [
            ("handshakes", s.handshake_ms.p99),
            ("sign-ins", s.sign_in_ms.p99),
            ("session set-up", s.session_ms.p99),
        ];
        let what = parts
            .iter()
            .fold(parts[0], |a, b| if b.1 > a.1 { *b } else { a })
            .0;
        return Some((
            what.into(),
            format!(
                "connect p99 {:.0} ms passed the {connect_slo:.0} ms objective (handshake p99 {:.0} ms, sign-in p99 {:.0} ms, session set-up p99 {:.0} ms)",
                s.connect_ms.p99, s.handshake_ms.p99, s.sign_in_ms.p99, s.session_ms.p99
            ),
        ));
    }
    let stream_slo = ms(args.slo_stream_p99);
    if s.stream_open_ms.p99 > stream_slo {
        return Some((
            "tunnel streams".into(),
            format!(
                "stream-open p99 {:.1} ms passed the {stream_slo:.0} ms objective",
                s.stream_open_ms.p99
            ),
        ));
    }
    None
}

fn headline(knee: u32, first_step: u32, gave_out: Option<&str>, args: &StressArgs) -> String {
    let slo = ms(args.slo_connect_p99);
    match (knee, gave_out) {
        (0, Some(what)) => format!(
            "Even {first_step} staff were more than this broker could take within the {slo:.0} ms connect objective; {what} gave out first."
        ),
        (n, Some(what)) => format!(
            "This broker held {n} staff within the {slo:.0} ms connect objective; {what} gave out first."
        ),
        (n, None) => format!(
            "This broker held {n} staff within the {slo:.0} ms connect objective, the most asked for; nothing gave out."
        ),
    }
}

pub async fn run(client: &Client, args: &StressArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let step = args.step.unwrap_or((args.max_agents / 10).max(1));
    let mut steps = Vec::new();
    let mut gave_out = None;
    let mut n = step.min(args.max_agents);
    loop {
        eprintln!(
            "capacity: step {}: {n} agents (ramp {}, hold {})",
            steps.len() + 1,
            humantime::format_duration(args.ramp),
            humantime::format_duration(args.duration)
        );
        let (result, cleanup) = measured(client, args, n).await;
        if cleanup.as_ref().is_some_and(|c| c.outcome == "incomplete") {
            return Err(CliError::Failed(
                "a step could not remove what it made; stopping the search".into(),
            ));
        }
        let summary = match result {
            Ok(s) => s,
            Err(CliError::Interrupted) => return Err(CliError::Interrupted),
            Err(e) => {
                gave_out = Some(("the run".to_owned(), e.to_string()));
                break;
            }
        };
        let broke = judge(&summary, args);
        steps.push(Step {
            agents: n,
            connected: summary.agents_connected,
            failed: summary.agents_failed,
            connect_p99_ms: summary.connect_ms.p99,
            handshake_p99_ms: summary.handshake_ms.p99,
            sign_in_p99_ms: summary.sign_in_ms.p99,
            session_p99_ms: summary.session_ms.p99,
            stream_open_p99_ms: summary.stream_open_ms.p99,
            throughput_bytes_per_s: summary.throughput.mean_bytes_per_s,
            within: broke.is_none(),
            broke: broke.as_ref().map(|b| b.1.clone()),
        });
        if broke.is_some() {
            gave_out = broke;
            break;
        }
        if n >= args.max_agents {
            break;
        }
        n = n.saturating_add(step).min(args.max_agents);
    }
    let best = steps.iter().rfind(|s| s.within);
    let knee = Knee {
        headline: headline(
            best.map_or(0, |s| s.agents),
            step.min(args.max_agents),
            gave_out.as_ref().map(|g| g.0.as_str()),
            args,
        ),
        agents: best.map_or(0, |s| s.agents),
        throughput_bytes_per_s: best.map_or(0.0, |s| s.throughput_bytes_per_s),
        gave_out: gave_out.map(|g| format!("{}: {}", g.0, g.1)),
        slo_connect_p99_ms: ms(args.slo_connect_p99),
        slo_stream_p99_ms: ms(args.slo_stream_p99),
        identities: if args.signed_in {
            "each simulated agent enrolled and signed in before its step's clock started (--signed-in): a connect is the handshake and the session, as for staff whose agent already holds a sign-in; password checks are not in the knee".into()
        } else {
            "each simulated agent enrolled and signed in during its step's ramp (a password check each): sign-ins count against the broker".into()
        },
        steps,
    };
    if let Some(path) = &args.json_out {
        let text =
            serde_json::to_string_pretty(&knee).map_err(|e| CliError::Failed(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, html(&knee))
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    if out.json {
        return Ok(out.json(&knee)?);
    }
    out.line(&knee.headline)?;
    let rows: Vec<Vec<String>> = knee
        .steps
        .iter()
        .map(|s| {
            vec![
                s.agents.to_string(),
                s.failed.to_string(),
                format!("{:.0}", s.connect_p99_ms),
                format!("{:.0}", s.handshake_p99_ms),
                format!("{:.0}", s.sign_in_p99_ms),
                format!("{:.1}", s.stream_open_p99_ms),
                report::human_bytes(s.throughput_bytes_per_s) + "/s",
                s.broke.clone().unwrap_or_else(|| "within".into()),
            ]
        })
        .collect();
    out.table(
        &[
            "AGENTS",
            "FAILED",
            "CONNECT P99 MS",
            "HANDSHAKE",
            "SIGN-IN",
            "STREAM P99 MS",
            "THROUGHPUT",
            "",
        ],
        &rows,
    )?;
    Ok(())
}

/// The report for an ICT manager: the headline first, then connect and
/// stream-open p99 against the agents at each step, with the objectives.
fn html(k: &Knee) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let (w, h, pad) = (640.0, 280.0, 48.0);
    let max_x = k.steps.iter().map(|s| s.agents).max().unwrap_or(1).max(1) as f64;
    let max_y = k
        .steps
        .iter()
        .map(|s| s.connect_p99_ms)
        .fold(k.slo_connect_p99_ms * 1.2, f64::max)
        .max(1.0);
    let x = |a: f64| pad + a / max_x * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v.min(max_y) / max_y * (h - 2.0 * pad);
    let line = |f: &dyn Fn(&Step) -> f64| {
        k.steps
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.agents as f64), y(f(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: String = k
        .steps
        .iter()
        .map(|s| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.1}</td><td>{}</td></tr>",
                s.agents,
                s.failed,
                s.connect_p99_ms,
                s.handshake_p99_ms,
                s.sign_in_p99_ms,
                s.stream_open_p99_ms,
                esc(s.broke.as_deref().unwrap_or("within the objectives"))
            )
        })
        .collect();
    format!(
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Lanyard capacity</title>
<style>body{{font-family:system-ui,sans-serif;max-width:720px;margin:2em auto;color:#222}}h1{{font-size:1.4em}}table{{border-collapse:collapse}}td,th{{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:right}}</style></head>
<body><h1>{headline}</h1>
<p>Each step brought more simulated staff in at once; {identities}. The connect objective is p99 {slo_c:.0} ms; the stream-open objective p99 {slo_s:.0} ms.</p>
<svg width="{w}" height="{h}" role="img" aria-label="connect p99 by agents">
<line x1="{pad}" y1="{slo_y:.1}" x2="{x_end:.1}" y2="{slo_y:.1}" stroke="#c00" stroke-dasharray="4 3"/>
<text x="{x_end:.1}" y="{slo_label_y:.1}" text-anchor="end" font-size="11" fill="#c00">connect objective</text>
<polyline fill="none" stroke="#036" stroke-width="2" points="{connect}"/>
<line x1="{pad}" y1="{base:.1}" x2="{x_end:.1}" y2="{base:.1}" stroke="#888"/>
<text x="{pad}" y="{label_y:.1}" font-size="11">agents (up to {max_x})</text>
<text x="4" y="{pad}" font-size="11">connect p99 (ms, up to {max_y:.0})</text>
</svg>
<table><tr><th>agents</th><th>failed</th><th>connect p99</th><th>handshake p99</th><th>sign-in p99</th><th>stream-open p99</th><th></th></tr>{rows}</table>
</body></html>
"##,
        headline = esc(&k.headline),
        identities = esc(&k.identities),
        slo_c = k.slo_connect_p99_ms,
        slo_s = k.slo_stream_p99_ms,
        slo_y = y(k.slo_connect_p99_ms),
        slo_label_y = y(k.slo_connect_p99_ms) - 4.0,
        x_end = w - pad,
        base = h - pad,
        label_y = h - pad + 16.0,
        connect = line(&|s: &Step| s.connect_p99_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headline_says_the_knee_and_what_gave_out() {
        let args = <crate::Cli as clap::Parser>::parse_from([
            "lanyard",
            "stress",
            "--find-capacity",
            "--slo-connect-p99",
            "500ms",
        ]);
        let crate::Command::Stress(args) = args.command else {
            panic!("not stress")
        };
        assert_eq!(
            headline(4200, 500, Some("sign-ins"), &args),
            "This broker held 4200 staff within the 500 ms connect objective; sign-ins gave out first."
        );
        assert!(headline(0, 500, Some("handshakes"), &args).starts_with("Even 500 staff"));
        assert!(headline(5000, 500, None, &args).contains("nothing gave out"));
    }
}
