//! `lanyard sessions list/kill`

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Live agent sessions on every broker node: node, person, device,
    /// since, and (for the node answering) open streams and bytes each way.
    #[command(after_help = "Examples:
  lanyard sessions list
  lanyard sessions list --node broker-b
  lanyard sessions list --json")]
    List {
        /// Only the sessions held on this node (as `lanyard nodes list` names it).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// End a session at once, on whichever node holds it: its tunnels close,
    /// and its agent must sign in again before it can reconnect.
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
    node: String,
    username: String,
    device: String,
    kind: String,
    remote: String,
    since: String,
    /// Known only to the node holding the session.
    open_streams: Option<u64>,
    streams_total: Option<u64>,
    bytes_up: Option<u64>,
    bytes_down: Option<u64>,
}

fn bytes(n: Option<u64>) -> String {
    let Some(n) = n else {
        return "-".into();
    };
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
        SessionsCommand::List { node } => {
            let path = match node {
                Some(n) => format!("/api/v1/sessions?node={}", encode(n)),
                None => "/api/v1/sessions".into(),
            };
            let sessions: Vec<Session> = client.get(&path).await?;
            if out.json {
                return Ok(out.json(&sessions)?);
            }
            let rows = sessions
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.node.clone(),
                        s.username.clone(),
                        s.device.clone(),
                        s.kind.clone(),
                        s.since.clone(),
                        s.open_streams.map_or("-".into(), |n| n.to_string()),
                        bytes(s.bytes_up),
                        bytes(s.bytes_down),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &[
                    "SESSION", "NODE", "PERSON", "DEVICE", "KIND", "SINCE", "STREAMS", "UP", "DOWN",
                ],
                &rows,
            )?;
        }
        SessionsCommand::Kill { session_id } => {
            client
                .delete(&format!("/api/v1/sessions/{}", encode(session_id)))
                .await?;
            out.done(
                serde_json::json!({ "session": session_id, "ended": true }),
                format!("ended session {session_id}"),
            )?;
        }
    }
    Ok(())
}
