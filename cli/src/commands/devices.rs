//! `lanyard devices ...`: council laptops.

use clap::Subcommand;
use serde_json::json;

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Status {
    InStock,
    Allocated,
    InRepair,
    Lost,
    Retired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InStock => "in-stock",
            Status::Allocated => "allocated",
            Status::InRepair => "in-repair",
            Status::Lost => "lost",
            Status::Retired => "retired",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Add a council laptop to the inventory.
    ///
    /// Example: lanyard devices add LT-00421 --serial PF3ABC12 --model "ThinkPad T14"
    Add {
        asset_tag: String,
        #[arg(long)]
        serial: String,
        #[arg(long)]
        model: String,
        #[arg(long, value_enum, default_value = "in-stock")]
        status: Status,
    },
    /// List laptops.
    List {
        #[arg(long, value_enum)]
        status: Option<Status>,
    },
    /// Show one laptop.
    Show { asset_tag: String },
}

pub async fn run(cli: &Cli, cmd: &DevicesCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        DevicesCommand::Add {
            asset_tag,
            serial,
            model,
            status,
        } => {
            let body = json!({ "asset_tag": asset_tag, "serial": serial, "model": model, "status": status.as_str() });
            let l: serde_json::Value = client.post("/api/v1/devices", &body).await?;
            if out.json {
                return Ok(out.json(&l)?);
            }
            out.line(format!(
                "added laptop {} ({}, serial {}), {}",
                l["asset_tag"].as_str().unwrap_or(""),
                l["model"].as_str().unwrap_or(""),
                l["serial"].as_str().unwrap_or(""),
                l["status"].as_str().unwrap_or("")
            ))?;
        }
        DevicesCommand::List { status } => {
            let path = match status {
                Some(s) => format!("/api/v1/devices?status={}", s.as_str()),
                None => "/api/v1/devices".into(),
            };
            let list: Vec<serde_json::Value> = client.get(&path).await?;
            if out.json {
                return Ok(out.json(&list)?);
            }
            let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
            let rows = list
                .iter()
                .map(|l| {
                    vec![
                        s(l, "asset_tag"),
                        s(l, "serial"),
                        s(l, "model"),
                        s(l, "status"),
                        s(l, "kind"),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(&["ASSET TAG", "SERIAL", "MODEL", "STATUS", "KIND"], &rows)?;
        }
        DevicesCommand::Show { asset_tag } => {
            let l: serde_json::Value = client
                .get(&format!("/api/v1/devices/{}", encode(asset_tag)))
                .await?;
            if out.json {
                return Ok(out.json(&l)?);
            }
            for key in [
                "asset_tag",
                "serial",
                "model",
                "status",
                "kind",
                "notes",
                "created",
            ] {
                out.line(format!("{key:<11} {}", l[key].as_str().unwrap_or("")))?;
            }
        }
    }
    Ok(())
}
