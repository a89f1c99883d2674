//! `lanyard enroll-code create`

use clap::{ArgGroup, Subcommand};
use serde_json::json;

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
}

pub async fn run(cli: &Cli, cmd: &EnrollCodeCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    let EnrollCodeCommand::Create {
        device,
        personal,
        ttl,
    } = cmd;
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
