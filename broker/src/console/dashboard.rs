//! `GET /`: the live load (agents, streams, bytes/s per app, capacity used
//! against the admission thresholds), today's peak, every node, and a
//! chart of the last hours from the load history. `GET /live.json`: the
//! same figures for the page's script to refresh.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::html::{esc, figures, table, Page};
use super::session::Session;
use super::{problem, respond};
use crate::clock::{now_ms, rfc3339};
use crate::model::Role;
use crate::state::AppState;

/// How far back the chart goes.
const CHART_HOURS: i64 = 6;
/// Points drawn at most (samples are averaged into this many).
const CHART_POINTS: usize = 120;

pub fn bytes_per_s(b: f64) -> String {
    let units = ["B/s", "KB/s", "MB/s", "GB/s"];
    let mut v = b.max(0.0);
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The live figures, by the id of the element that shows each.
async fn live_figures(
    state: &AppState,
) -> Result<Vec<(&'static str, String)>, crate::store::StoreError> {
    let r = crate::load::report(state.load_sources()).await?;
    Ok(vec![
        ("agents", r.agents.to_string()),
        ("streams", r.streams.to_string()),
        (
            "capacity",
            format!("{}% of {}", r.capacity_used_percent, r.capacity),
        ),
        ("up", bytes_per_s(r.rates.bytes_up_per_s)),
        ("down", bytes_per_s(r.rates.bytes_down_per_s)),
        ("signins", format!("{:.1}/s", r.rates.signins_per_s)),
        (
            "peak",
            r.peak_today.as_ref().map_or("none yet".into(), |p| {
                format!("{} agents at {}", p.agents, p.at)
            }),
        ),
        (
            "all-nodes",
            format!(
                "{} agents, {} streams on {} node{}",
                r.all_nodes.agents,
                r.all_nodes.streams,
                r.all_nodes.nodes,
                if r.all_nodes.nodes == 1 { "" } else { "s" }
            ),
        ),
    ])
}

pub async fn live(State(state): State<AppState>, session: Session) -> Response {
    if let Err(r) = session
        .require(&state, Role::Viewer, "GET /live.json")
        .await
    {
        return r;
    }
    match live_figures(&state).await {
        Ok(f) => Json(
            f.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .into_response(),
        Err(e) => super::store_problem(e).into_response(),
    }
}

/// An SVG line chart of agents over the last hours, with its figures in
/// words for those who cannot see it.
fn chart(samples: &[crate::store::load::LoadSample], capacity: usize) -> String {
    if samples.is_empty() {
        return "<p>No load history yet: the broker records a sample every few seconds.</p>".into();
    }
    let per = samples.len().div_ceil(CHART_POINTS).max(1);
    let points: Vec<(i64, f64)> = samples
        .chunks(per)
        .map(|c| {
            let at = c[c.len() - 1].at_ms;
            let agents = c.iter().map(|s| s.agents as f64).sum::<f64>() / c.len() as f64;
            (at, agents)
        })
        .collect();
    let (w, h) = (600.0, 160.0);
    let top = points
        .iter()
        .map(|p| p.1)
        .fold(capacity as f64 * 0.1, f64::max)
        .max(1.0);
    let t0 = points[0].0;
    let span = (points[points.len() - 1].0 - t0).max(1) as f64;
    let mut path = String::new();
    for (i, (at, v)) in points.iter().enumerate() {
        let x = (*at - t0) as f64 / span * w;
        let y = h - v / top * h;
        let _ = write!(path, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    let most = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let last = points[points.len() - 1].1;
    let words = format!(
        "Agents over the last {CHART_HOURS} hours, from {} to {}: at most {most:.0}, now {last:.0}.",
        rfc3339(t0),
        rfc3339(points[points.len() - 1].0)
    );
    format!(
        "<figure class=\"chart\"><svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"chart-words\" \
         preserveAspectRatio=\"none\"><path d=\"{}\" fill=\"none\" stroke=\"#1d70b8\" stroke-width=\"2\" \
         vector-effect=\"non-scaling-stroke\"/></svg><figcaption id=\"chart-words\">{}</figcaption></figure>",
        path.trim_end(),
        esc(&words)
    )
}

pub async fn show(State(state): State<AppState>, session: Session) -> Response {
    let viewer = session.viewer();
    if session.caller.role < Role::Viewer {
        // Staff have their own page.
        return axum::response::Redirect::to("/me").into_response();
    }
    let figures_now = match live_figures(&state).await {
        Ok(f) => f,
        Err(e) => return problem(&viewer, "Dashboard", "/", e),
    };
    let report = match crate::load::report(state.load_sources()).await {
        Ok(r) => r,
        Err(e) => return problem(&viewer, "Dashboard", "/", e),
    };
    let admission = state.live().admission;
    let since = now_ms() - CHART_HOURS * 3_600_000;
    let history = match state.store.load_history(&state.node, since).await {
        Ok(h) => h,
        Err(e) => return problem(&viewer, "Dashboard", "/", e),
    };
    let nodes = match state.store.nodes_list().await {
        Ok(n) => n,
        Err(e) => return problem(&viewer, "Dashboard", "/", e),
    };
    let label = |id: &str| match id {
        "agents" => "Agents connected",
        "streams" => "Open streams",
        "capacity" => "Capacity used",
        "up" => "Upload",
        "down" => "Download",
        "signins" => "Sign-ins",
        "peak" => "Today's peak",
        _ => "All nodes",
    };
    let items: Vec<(&str, String, &str)> = figures_now
        .iter()
        .map(|(id, v)| (label(id), esc(v), *id))
        .collect();
    let apps: Vec<Vec<String>> = report
        .rates
        .apps
        .iter()
        .map(|(app, r)| {
            vec![
                esc(app),
                esc(&bytes_per_s(r.bytes_up_per_s)),
                esc(&bytes_per_s(r.bytes_down_per_s)),
            ]
        })
        .collect();
    let now = now_ms();
    let node_rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let alive = now - n.heartbeat_at < crate::store::nodes::NODE_LOST_AFTER_MS;
            vec![
                esc(&n.name),
                esc(&n.quic_addr),
                if alive { "up" } else { "not heard from" }.into(),
                n.agents.to_string(),
                n.streams.to_string(),
                esc(&rfc3339(n.heartbeat_at)),
            ]
        })
        .collect();
    let body = format!(
        "<p class=\"lede\">Node {} · refreshed every 5 seconds while this page is open.</p>\
         <section aria-labelledby=\"now\"><h2 id=\"now\">Now</h2>{}</section>\
         <section aria-labelledby=\"admission\"><h2 id=\"admission\">Admission</h2>\
         <p>This node is sized for {} agents. From {}% of that only priorities 1 and 2 are let in; \
         from {}% only priority 1.</p></section>\
         <section aria-labelledby=\"history\"><h2 id=\"history\">The last {CHART_HOURS} hours</h2>{}</section>\
         <section aria-labelledby=\"apps\"><h2 id=\"apps\">Traffic by app</h2>{}</section>\
         <section aria-labelledby=\"nodes\"><h2 id=\"nodes\">Nodes</h2>{}</section>",
        esc(&state.node),
        figures(&items),
        admission.capacity,
        admission.only_priority_1_2_at,
        admission.only_priority_1_at,
        chart(&history, admission.capacity),
        table("Bytes per second by app", &["App", "Up", "Down"], &apps),
        table(
            "Broker nodes",
            &["Node", "Address", "State", "Agents", "Streams", "Last heartbeat"],
            &node_rows
        ),
    );
    respond(
        axum::http::StatusCode::OK,
        Page {
            title: "Dashboard",
            viewer: Some(&viewer),
            current: "/",
            notice: None,
            errors: &[],
            live: true,
            body,
        },
    )
}
