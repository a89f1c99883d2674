//! `lanyard sessions list/kill`

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Live agent sessions on the broker: person, device, since, open
    /// streams and bytes each way.
    #[command(after_help = "Examples:
  lanyard sessions list
  lanyard sessions list --json")]
    List,
    /// End a session at once: its tunnels close, and its agent must sign in
    /// again before it can reconnect.
    #[command(after_help = "Example:
  lanyard sessions kill 3f2a9c...")]
    Kill {
        /// The session id, from `lanyard sessions list`.
        session_id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Session {
    id: String,
    username: String,
    device: String,
    kind: String,
    remote: String,
    since: String,
    open_streams: u64,
    streams_total: u64,
    bytes_up: u64,
    bytes_down: u64,
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub async fn run(cli: &Cli, cmd: &SessionsCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        SessionsCommand::List => {
            let sessions: Vec<Session> = client.get("/api/v1/sessions").await?;
            if out.json {
                return Ok(out.json(&sessions)?);
            }
            let rows = sessions
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.username.clone(),
                        s.device.clone(),
                        s.kind.clone(),
                        s.since.clone(),
                        s.open_streams.to_string(),
                        bytes(s.bytes_up),
                        bytes(s.bytes_down),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &[
                    "SESSION", "PERSON", "DEVICE", "KIND", "SINCE", "STREAMS", "UP", "DOWN",
                ],
                &rows,
            )?;
        }
        SessionsCommand::Kill { session_id } => {
            client
                .delete(&format!("/api/v1/sessions/{}", encode(session_id)))
                .await?;
            out.line(format!("ended session {session_id}"))?;
        }
    }
    Ok(())
}
