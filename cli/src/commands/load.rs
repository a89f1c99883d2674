//! `lanyard load`

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Serialize, Deserialize)]
struct AppRate {
    bytes_up_per_s: f64,
    bytes_down_per_s: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Rates {
    handshakes_per_s: f64,
    signins_per_s: f64,
    bytes_up_per_s: f64,
    bytes_down_per_s: f64,
    apps: BTreeMap<String, AppRate>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Peak {
    agents: i64,
    streams: i64,
    at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Load {
    node: String,
    at: String,
    agents: u64,
    streams: u64,
    capacity: u64,
    capacity_used_percent: f64,
    rates: Rates,
    denials_total: BTreeMap<String, u64>,
    peak_today: Option<Peak>,
    /// Absent from a broker before several nodes.
    all_nodes: Option<AllNodes>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AllNodes {
    nodes: u64,
    agents: u64,
    streams: u64,
}

fn rate(bytes_per_s: f64) -> String {
    let bits = bytes_per_s * 8.0;
    if bits >= 1e9 {
        format!("{:.2} Gbit/s", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.1} Mbit/s", bits / 1e6)
    } else {
        format!("{:.0} kbit/s", bits / 1e3)
    }
}

pub async fn run(cli: &Cli, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    let load: Load = client.get("/api/v1/load").await?;
    if out.json {
        return Ok(out.json(&load)?);
    }
    out.line(format!("node         {} at {}", load.node, load.at))?;
    out.line(format!(
        "agents       {} of {} ({}% of capacity)",
        load.agents, load.capacity, load.capacity_used_percent
    ))?;
    out.line(format!("streams      {}", load.streams))?;
    if let Some(all) = load.all_nodes.as_ref().filter(|a| a.nodes > 1) {
        out.line(format!(
            "all nodes    {} nodes: {} agents, {} streams",
            all.nodes, all.agents, all.streams
        ))?;
    }
    out.line(format!(
        "per second   {:.1} handshakes, {:.1} sign-ins, {} up, {} down",
        load.rates.handshakes_per_s,
        load.rates.signins_per_s,
        rate(load.rates.bytes_up_per_s),
        rate(load.rates.bytes_down_per_s)
    ))?;
    if let Some(p) = &load.peak_today {
        out.line(format!(
            "peak today   {} agents, {} streams at {}",
            p.agents, p.streams, p.at
        ))?;
    }
    if !load.denials_total.is_empty() {
        let d: Vec<String> = load
            .denials_total
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.line(format!("denied       {}", d.join(", ")))?;
    }
    if !load.rates.apps.is_empty() {
        let rows: Vec<Vec<String>> = load
            .rates
            .apps
            .iter()
            .map(|(app, r)| {
                vec![
                    app.clone(),
                    rate(r.bytes_up_per_s),
                    rate(r.bytes_down_per_s),
                ]
            })
            .collect();
        out.line("")?;
        out.table(&["APP", "UP", "DOWN"], &rows)?;
    }
    Ok(())
}
