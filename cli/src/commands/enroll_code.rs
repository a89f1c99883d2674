//! `lanyard enroll-code create/list/cancel`

use clap::{ArgGroup, Subcommand};
use serde_json::json;

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum EnrollCodeCommand {
    /// Create a single-use enrolment code and print it (one line).
    ///
    /// The code carries the broker's address, its CA fingerprint and a
    /// secret; the laptop's user runs `lanyard-agent enroll CODE`.
    #[command(
        group(ArgGroup::new("for").required(true).args(["device", "personal"])),
        after_help = "Examples:
  lanyard enroll-code create --device LT-00421
  lanyard enroll-code create --personal j.smith --ttl 2h"
    )]
    Create {
        /// A council laptop, by asset tag.
        #[arg(long, value_name = "ASSET_TAG")]
        device: Option<String>,
        /// A staff member's own device.
        #[arg(long, value_name = "USERNAME")]
        personal: Option<String>,
        /// How long the code stays valid [default: the broker's, 24h].
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// List enrolment codes, newest first, with what each enrols and its
    /// state (open, used, expired, cancelled). Codes themselves are never
    /// shown again.
    #[command(after_help = "Examples:
  lanyard enroll-code list
  lanyard enroll-code list --open --json")]
    List {
        /// Only codes that could still enrol something.
        #[arg(long)]
        open: bool,
    },
    /// Cancel an open code: from then on it enrols nothing. Audited.
    #[command(after_help = "Example:
  lanyard enroll-code cancel 8f3c2a1e9b7d4c6f0a1b2c3d4e5f6a7b")]
    Cancel {
        /// The code's id, from `lanyard enroll-code list` (or printed by
        /// `create --json`).
        code_id: String,
    },
}

fn s(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or("-").to_owned()
}

pub async fn run(cli: &Cli, cmd: &EnrollCodeCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    let (device, personal, ttl) = match cmd {
        EnrollCodeCommand::Create {
            device,
            personal,
            ttl,
        } => (device, personal, ttl),
        EnrollCodeCommand::List { open } => {
            let codes: Vec<serde_json::Value> = client
                .get(&format!("/api/v1/enrolment-codes?open={open}"))
                .await?;
            if out.json {
                return Ok(out.json(&codes)?);
            }
            let rows = codes
                .iter()
                .map(|c| {
                    ["id", "kind", "for", "state", "created_by", "expires_at"]
                        .iter()
                        .map(|k| s(c, k))
                        .collect()
                })
                .collect::<Vec<_>>();
            return Ok(out.table(&["ID", "KIND", "FOR", "STATE", "BY", "EXPIRES"], &rows)?);
        }
        EnrollCodeCommand::Cancel { code_id } => {
            let code: serde_json::Value = client
                .post(
                    &format!("/api/v1/enrolment-codes/{}/cancel", encode(code_id)),
                    &json!({}),
                )
                .await?;
            if out.json {
                return Ok(out.json(&code)?);
            }
            return Ok(out.line(format!(
                "cancelled enrolment code {} ({} {})",
                s(&code, "id"),
                s(&code, "kind"),
                s(&code, "for")
            ))?);
        }
    };
    let resp: serde_json::Value = client
        .post(
            "/api/v1/enrolment-codes",
            &json!({ "device": device, "personal": personal, "ttl": ttl }),
        )
        .await?;
    if out.json {
        return Ok(out.json(&resp)?);
    }
    out.line(resp["code"].as_str().unwrap_or_default())?;
    eprintln!(
        "code for {} expires {}; it works once",
        resp["for"].as_str().unwrap_or("?"),
        resp["expires_at"].as_str().unwrap_or("?")
    );
    Ok(())
}
