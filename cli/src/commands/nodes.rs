//! `lanyard nodes list`

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Every broker node that has run on this store: its addresses, when it
    /// started, its last heartbeat, and its agents and streams then. A node
    /// silent for 30 s is shown as lost (its sessions are recorded as ended).
    #[command(after_help = "Examples:
  lanyard nodes list
  lanyard nodes list --json")]
    List,
}

#[derive(Debug, Serialize, Deserialize)]
struct Node {
    name: String,
    quic_addr: String,
    api_addr: String,
    started_at: String,
    heartbeat_at: String,
    alive: bool,
    this: bool,
    agents: i64,
    streams: i64,
}

pub async fn run(cli: &Cli, cmd: &NodesCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        NodesCommand::List => {
            let nodes: Vec<Node> = client.get("/api/v1/nodes").await?;
            if out.json {
                return Ok(out.json(&nodes)?);
            }
            let rows = nodes
                .iter()
                .map(|n| {
                    vec![
                        if n.this {
                            format!("{} (this)", n.name)
                        } else {
                            n.name.clone()
                        },
                        if n.alive { "up" } else { "lost" }.to_owned(),
                        n.quic_addr.clone(),
                        n.api_addr.clone(),
                        n.started_at.clone(),
                        n.heartbeat_at.clone(),
                        n.agents.to_string(),
                        n.streams.to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &[
                    "NODE",
                    "STATE",
                    "QUIC",
                    "API",
                    "STARTED",
                    "HEARTBEAT",
                    "AGENTS",
                    "STREAMS",
                ],
                &rows,
            )?;
        }
    }
    Ok(())
}
