//! `lanyard audit list/verify`

use clap::Subcommand;

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, oldest first (the newest --limit of them).
    #[command(after_help = "Examples:
  lanyard audit list --limit 20
  lanyard audit list --since 24h --action staff.
  lanyard audit list --actor j.smith --json")]
    List {
        /// From this time (2026-11-01T09:00:00Z, 2026-11-01) or age (24h, 7d).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only this actor (a username, `bootstrap` or `anonymous`).
        #[arg(long, value_name = "U")]
        actor: Option<String>,
        /// Only actions starting with this, e.g. `staff.` or `signin`.
        #[arg(long, value_name = "PREFIX")]
        action: Option<String>,
        /// At most this many records (the newest).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
    },
    /// Check the hash chain, and check it against the broker's signed
    /// checkpoints (kept outside the database); exits non-zero and names the
    /// first bad row if any row was edited or deleted, or the log rewound.
    #[command(after_help = "Example:
  lanyard audit verify")]
    Verify,
}

pub async fn run(cli: &Cli, cmd: &AuditCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        AuditCommand::List {
            since,
            actor,
            action,
            limit,
        } => {
            let mut path = format!("/api/v1/audit?limit={limit}");
            for (k, v) in [("since", since), ("actor", actor), ("action", action)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", encode(v)));
                }
            }
            let rows: Vec<serde_json::Value> = client.get(&path).await?;
            if out.json {
                return Ok(out.json(&rows)?);
            }
            let s = |v: &serde_json::Value, k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            let table = rows
                .iter()
                .map(|r| {
                    vec![
                        s(r, "seq"),
                        s(r, "at"),
                        s(r, "actor"),
                        s(r, "action"),
                        s(r, "target"),
                        s(r, "outcome"),
                        s(r, "detail"),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &[
                    "SEQ", "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL",
                ],
                &table,
            )?;
        }
        AuditCommand::Verify => {
            let report: serde_json::Value = client.get("/api/v1/audit/verify").await?;
            if out.json {
                out.json(&report)?;
            } else if report["ok"] == true {
                out.line(format!(
                    "audit log intact: {} rows verified, against {} signed checkpoints",
                    report["rows_checked"], report["checkpoints_checked"]
                ))?;
            }
            if report["ok"] != true {
                return Err(CliError::Failed(format!(
                    "audit log damaged: {}",
                    report["problem"].as_str().unwrap_or("unknown problem")
                )));
            }
        }
    }
    Ok(())
}
