//! `lanyard requests add/list/fulfil/cancel`: the laptop request queue.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Queue a laptop request for a staff member (one open request each).
    #[command(after_help = "Examples:
  lanyard requests add m.jones
  lanyard requests add k.lee --reason \"contact centre, taking calls from home\"")]
    Add {
        /// Who the laptop is for (their priority sets their place).
        username: String,
        /// Why they need one [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
    },
    /// List requests; open ones in queue order with their place.
    #[command(after_help = "Examples:
  lanyard requests list --open
  lanyard requests list --json")]
    List {
        /// Only open requests.
        #[arg(long)]
        open: bool,
    },
    /// Allocate in-stock laptops to open requests: priority 1 first, then 2,
    /// then 3; oldest first within a tier. When stock runs out, the rest stay
    /// queued.
    #[command(after_help = "Examples:
  lanyard requests fulfil
  lanyard requests fulfil --limit 10")]
    Fulfil {
        /// At most this many allocations [default: as many as there are
        /// laptops in stock and requests open].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Cancel a staff member's open request.
    #[command(after_help = "Example:
  lanyard requests cancel m.jones")]
    Cancel {
        /// Whose request to cancel.
        username: String,
    },
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub async fn run(cli: &Cli, cmd: &RequestsCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        RequestsCommand::Add { username, reason } => {
            let r: Value = client
                .post(
                    "/api/v1/requests",
                    &json!({ "username": username, "reason": reason }),
                )
                .await?;
            if out.json {
                return Ok(out.json(&r)?);
            }
            out.line(format!(
                "queued a laptop request for {} (priority {}), place {} in the queue",
                s(&r, "username"),
                s(&r, "priority"),
                s(&r, "place")
            ))?;
        }
        RequestsCommand::List { open } => {
            let rows: Vec<Value> = client.get(&format!("/api/v1/requests?open={open}")).await?;
            if out.json {
                return Ok(out.json(&rows)?);
            }
            let table = rows
                .iter()
                .map(|r| {
                    vec![
                        s(r, "place"),
                        s(r, "username"),
                        s(r, "priority"),
                        s(r, "department"),
                        s(r, "status"),
                        s(r, "requested"),
                        s(r, "asset_tag"),
                        s(r, "reason"),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &[
                    "PLACE",
                    "USERNAME",
                    "PRIORITY",
                    "DEPARTMENT",
                    "STATUS",
                    "REQUESTED",
                    "LAPTOP",
                    "REASON",
                ],
                &table,
            )?;
        }
        RequestsCommand::Fulfil { limit } => {
            let r: Value = client
                .post("/api/v1/requests/fulfil", &json!({ "limit": limit }))
                .await?;
            if out.json {
                return Ok(out.json(&r)?);
            }
            let allocated = r["allocated"].as_array().cloned().unwrap_or_default();
            let table = allocated
                .iter()
                .map(|a| vec![s(a, "asset_tag"), s(a, "username"), s(a, "priority")])
                .collect::<Vec<_>>();
            if !table.is_empty() {
                out.table(&["LAPTOP", "TO", "PRIORITY"], &table)?;
            }
            out.line(format!(
                "allocated {}; {} request(s) still queued; {} laptop(s) left in stock",
                allocated.len(),
                r["still_queued"],
                r["in_stock"]
            ))?;
            if let Some(skipped) = r["skipped_disabled"].as_array().filter(|a| !a.is_empty()) {
                let names: Vec<String> = skipped
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                out.line(format!("passed over (disabled): {}", names.join(", ")))?;
            }
        }
        RequestsCommand::Cancel { username } => {
            let _: Value = client
                .post(
                    &format!("/api/v1/requests/{}/cancel", encode(username)),
                    &json!({}),
                )
                .await?;
            out.done(
                json!({ "username": username, "cancelled": true }),
                format!("cancelled the open request of {username}"),
            )?;
        }
    }
    Ok(())
}
