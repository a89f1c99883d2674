//! `lanyard devices ...`: council laptops and enrolled personal devices.

use std::path::PathBuf;

use clap::Subcommand;
use http::Method;
use serde_json::{json, Value};

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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReturnStatus {
    InStock,
    InRepair,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MarkStatus {
    InStock,
    InRepair,
    Lost,
    Retired,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Managed,
    Personal,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Add a council laptop to the inventory.
    #[command(after_help = "Examples:
  lanyard devices add LT-00421 --serial PF3ABC12 --model \"ThinkPad T14\"
  lanyard devices add LT-00422 --serial PF3ABC13 --model \"ThinkPad T14\" --status in-repair \\
      --purchase-date 2025-03-31 --warranty-end 2028-03-31")]
    Add {
        /// The asset tag on the laptop's label, e.g. LT-00421.
        asset_tag: String,
        /// The maker's serial number.
        #[arg(long)]
        serial: String,
        /// The model, e.g. "ThinkPad T14".
        #[arg(long)]
        model: String,
        /// Its status on arrival.
        #[arg(long, value_enum, default_value = "in-stock")]
        status: Status,
        /// Free text [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        notes: String,
        /// When it was bought, YYYY-MM-DD [default: not recorded].
        #[arg(long, default_value = "", hide_default_value = true)]
        purchase_date: String,
        /// When its warranty ends, YYYY-MM-DD [default: not recorded].
        #[arg(long, default_value = "", hide_default_value = true)]
        warranty_end: String,
        /// Make it a pool laptop of GROUP: any active member may sign in on
        /// it, whoever holds it (contact-centre hot-desking) [default: none].
        #[arg(
            long,
            value_name = "GROUP",
            default_value = "",
            hide_default_value = true
        )]
        pool: String,
    },
    /// Import laptops from CSV with the header asset_tag,serial,model,status.
    ///
    /// notes, purchase_date and warranty_end may be added as columns. The
    /// whole file is checked first, in one pass: if any row is bad (a bad
    /// field or status, a missing column, a tag or serial repeated in the
    /// file or already in the inventory), nothing is written and every
    /// problem is listed by line.
    #[command(after_help = "Example:
  lanyard devices import laptops.csv

with laptops.csv:
  asset_tag,serial,model,status,warranty_end
  LT-00501,PF3A0501,ThinkPad T14,in-stock,2028-03-31
  LT-00502,PF3A0502,Latitude 5440,in-repair,")]
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// List laptops and personal devices, with filters.
    #[command(after_help = "Examples:
  lanyard devices list
  lanyard devices list --status allocated --department Revenues
  lanyard devices list --search thinkpad --json")]
    List {
        /// Only devices with this status [default: any].
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Only council laptops (managed) or personal devices [default: both].
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Exact model name.
        #[arg(long)]
        model: Option<String>,
        /// Who has it (username).
        #[arg(long)]
        holder: Option<String>,
        /// The holder's department.
        #[arg(long)]
        department: Option<String>,
        /// Text in the asset tag, serial or model (literal, any case).
        #[arg(long)]
        search: Option<String>,
    },
    /// Show a laptop: who has it, its allocations, and its agent.
    #[command(after_help = "Example:
  lanyard devices show LT-00421")]
    Show {
        /// The laptop's asset tag.
        asset_tag: String,
    },
    /// Hand an in-stock laptop to a staff member.
    #[command(after_help = "Examples:
  lanyard devices assign LT-00421 --to j.smith
  lanyard devices assign LT-00421 --to j.smith --note \"with charger and dock\"")]
    Assign {
        /// The laptop's asset tag; it must be in stock.
        asset_tag: String,
        /// The staff member who gets it (an active person).
        #[arg(long, value_name = "USERNAME")]
        to: String,
        /// A note for the audit log and the laptop's history [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// Take a laptop back from its holder.
    #[command(after_help = "Examples:
  lanyard devices return LT-00421
  lanyard devices return LT-00501 --status in-repair --note \"cracked screen\"")]
    Return {
        /// The laptop's asset tag.
        asset_tag: String,
        /// The condition it came back in.
        #[arg(long, value_enum, default_value = "in-stock")]
        status: ReturnStatus,
        /// A note for the audit log and the laptop's history [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// Set a laptop's status, or its pool group. Lost or retired also
    /// revokes its agent; in-repair, in-stock, lost and retired close the
    /// sessions on it.
    #[command(after_help = "Examples:
  lanyard devices mark LT-00421 --status lost --note \"left on a train\"
  lanyard devices mark LT-00502 --status in-stock
  lanyard devices mark LT-00600 --pool contact-centre
  lanyard devices mark LT-00600 --no-pool")]
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["status", "pool", "no_pool"])))]
    Mark {
        /// The laptop's asset tag.
        asset_tag: String,
        /// Its new status.
        #[arg(long, value_enum)]
        status: Option<MarkStatus>,
        /// Make it a pool laptop of GROUP: any active member of the group may
        /// use it, whoever holds it.
        #[arg(long, value_name = "GROUP", conflicts_with = "no_pool")]
        pool: Option<String>,
        /// Make it an ordinary laptop again: only its holder may use it.
        #[arg(long)]
        no_pool: bool,
        /// A note for the audit log and the laptop's history [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        note: String,
    },
    /// Revoke a laptop's agent certificates, or one personal device, and
    /// close its tunnels at once. A personal device's owner stays enabled
    /// and their other devices go on.
    #[command(
        group(clap::ArgGroup::new("which").required(true).args(["asset_tag", "personal"])),
        after_help = "Examples:
  lanyard devices revoke LT-00421 --reason \"stolen from car\"
  lanyard devices revoke --personal 3f2a9c0b1d4e5f67 --reason \"phone lost\""
    )]
    Revoke {
        /// The laptop's asset tag.
        asset_tag: Option<String>,
        /// A personal device, by the id `lanyard devices list --kind personal`
        /// shows (16 hex digits, or more).
        #[arg(long, value_name = "DEVICE_ID")]
        personal: Option<String>,
        /// Why, for the audit log [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
    },
    /// Everything that happened to a laptop, from the audit log.
    #[command(after_help = "Examples:
  lanyard devices history LT-00421
  lanyard devices history LT-00421 --json")]
    History {
        /// The laptop's asset tag.
        asset_tag: String,
    },
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn summary(l: &Value) -> String {
    let holder = match l["holder"].as_str() {
        Some(h) => format!(", with {h}"),
        None => String::new(),
    };
    format!(
        "{} ({}, serial {}): {}{holder}",
        s(l, "asset_tag"),
        s(l, "model"),
        s(l, "serial"),
        s(l, "status")
    )
}

pub async fn run(cli: &Cli, cmd: &DevicesCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    let path = |tag: &str, rest: &str| format!("/api/v1/devices/{}{rest}", encode(tag));
    match cmd {
        DevicesCommand::Add {
            asset_tag,
            serial,
            model,
            status,
            notes,
            purchase_date,
            warranty_end,
            pool,
        } => {
            let body = json!({
                "asset_tag": asset_tag, "serial": serial, "model": model, "status": status.as_str(),
                "notes": notes, "purchase_date": purchase_date, "warranty_end": warranty_end,
                "pool": pool,
            });
            let l: Value = client.post("/api/v1/devices", &body).await?;
            if out.json {
                return Ok(out.json(&l)?);
            }
            out.line(format!("added {}", summary(&l)))?;
        }
        DevicesCommand::Import { file } => {
            let csv = std::fs::read(file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let resp: Value = client
                .call(
                    Method::POST,
                    "/api/v1/devices/import",
                    Some(("text/csv", csv)),
                )
                .await?;
            if out.json {
                return Ok(out.json(&resp)?);
            }
            out.line(format!(
                "imported {} laptops from {}",
                resp["imported"],
                file.display()
            ))?;
        }
        DevicesCommand::List {
            status,
            kind,
            model,
            holder,
            department,
            search,
        } => {
            let mut query = Vec::new();
            if let Some(v) = status {
                query.push(format!("status={}", v.as_str()));
            }
            if let Some(k) = kind {
                query.push(format!(
                    "kind={}",
                    if matches!(k, Kind::Managed) {
                        "managed"
                    } else {
                        "personal"
                    }
                ));
            }
            for (key, v) in [
                ("model", model),
                ("holder", holder),
                ("department", department),
                ("q", search),
            ] {
                if let Some(v) = v {
                    query.push(format!("{key}={}", encode(v)));
                }
            }
            let url = if query.is_empty() {
                "/api/v1/devices".into()
            } else {
                format!("/api/v1/devices?{}", query.join("&"))
            };
            let list: Vec<Value> = client.get(&url).await?;
            if out.json {
                return Ok(out.json(&list)?);
            }
            let rows = list
                .iter()
                .map(|l| {
                    let id = if l["kind"] == "personal" {
                        s(l, "device_id")
                    } else {
                        s(l, "asset_tag")
                    };
                    vec![
                        id,
                        s(l, "kind"),
                        s(l, "model"),
                        s(l, "serial"),
                        s(l, "status"),
                        s(l, "holder"),
                        s(l, "department"),
                        s(l, "allocated_since"),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &[
                    "DEVICE",
                    "KIND",
                    "MODEL",
                    "SERIAL",
                    "STATUS",
                    "HOLDER",
                    "DEPARTMENT",
                    "SINCE",
                ],
                &rows,
            )?;
        }
        DevicesCommand::Show { asset_tag } => {
            let d: Value = client.get(&path(asset_tag, "")).await?;
            if out.json {
                return Ok(out.json(&d)?);
            }
            for key in [
                "asset_tag",
                "serial",
                "model",
                "status",
                "holder",
                "holder_name",
                "department",
                "allocated_since",
                "pool",
                "purchase_date",
                "warranty_end",
                "notes",
            ] {
                out.line(format!("{key:<16} {}", s(&d, key)))?;
            }
            let agents = d["agents"].as_array().cloned().unwrap_or_default();
            match agents.first() {
                None => out.line("agent            not enrolled")?,
                Some(a) => {
                    let state = if a["revoked"].is_null() {
                        "enrolled"
                    } else {
                        "revoked"
                    };
                    out.line(format!(
                        "agent            {state}, certificate {}",
                        s(a, "fingerprint").chars().take(16).collect::<String>()
                    ))?;
                    out.line(format!("  cert expires   {}", s(a, "cert_expires")))?;
                    out.line(format!("  last seen      {}", s(a, "last_seen")))?;
                    out.line(format!(
                        "  version / os   {} / {}",
                        s(a, "agent_version"),
                        s(a, "os")
                    ))?;
                }
            }
            let sign_ins = d["sign_ins"].as_array().cloned().unwrap_or_default();
            out.line(format!(
                "sign-ins         {} (newest first)",
                sign_ins.len()
            ))?;
            for si in &sign_ins {
                let how = if si["outcome"] == "ok" {
                    ""
                } else {
                    " (refused)"
                };
                out.line(format!("  {} {}{how}", s(si, "at"), s(si, "username")))?;
            }
            let allocations = d["allocations"].as_array().cloned().unwrap_or_default();
            out.line(format!("allocations      {}", allocations.len()))?;
            for a in allocations {
                let back = match a["returned"].as_str() {
                    Some(r) => format!(
                        "returned {r} to {} ({})",
                        s(&a, "received_by"),
                        s(&a, "return_condition")
                    ),
                    None => "still out".into(),
                };
                out.line(format!(
                    "  {} to {} by {}; {back}",
                    s(&a, "since"),
                    s(&a, "username"),
                    s(&a, "allocated_by")
                ))?;
            }
        }
        DevicesCommand::Assign {
            asset_tag,
            to,
            note,
        } => {
            let l: Value = client
                .post(
                    &path(asset_tag, "/assign"),
                    &json!({ "to": to, "note": note }),
                )
                .await?;
            if out.json {
                return Ok(out.json(&l)?);
            }
            out.line(format!("assigned {}", summary(&l)))?;
        }
        DevicesCommand::Return {
            asset_tag,
            status,
            note,
        } => {
            let st = if matches!(status, ReturnStatus::InStock) {
                "in-stock"
            } else {
                "in-repair"
            };
            let l: Value = client
                .post(
                    &path(asset_tag, "/return"),
                    &json!({ "status": st, "note": note }),
                )
                .await?;
            if out.json {
                return Ok(out.json(&l)?);
            }
            out.line(format!("returned {}", summary(&l)))?;
        }
        DevicesCommand::Mark {
            asset_tag,
            status,
            pool,
            no_pool,
            note,
        } => {
            let st = status.map(|status| match status {
                MarkStatus::InStock => "in-stock",
                MarkStatus::InRepair => "in-repair",
                MarkStatus::Lost => "lost",
                MarkStatus::Retired => "retired",
            });
            let pool = if *no_pool { Some("") } else { pool.as_deref() };
            let l: Value = client
                .post(
                    &path(asset_tag, "/mark"),
                    &json!({ "status": st, "pool": pool, "note": note }),
                )
                .await?;
            if out.json {
                return Ok(out.json(&l)?);
            }
            out.line(format!("marked {}", summary(&l)))?;
            if l["revoked_certificates"].as_u64().unwrap_or(0) > 0 {
                out.line(format!(
                    "revoked {} agent certificate(s); its tunnels are closed",
                    l["revoked_certificates"]
                ))?;
            }
        }
        DevicesCommand::Revoke {
            asset_tag: None,
            personal: Some(id),
            reason,
        } => {
            let r: Value = client
                .post(
                    &format!("/api/v1/personal-devices/{}/revoke", encode(id)),
                    &json!({ "reason": reason }),
                )
                .await?;
            if out.json {
                return Ok(out.json(&r)?);
            }
            out.line(format!(
                "revoked personal device {id} of {}",
                s(&r, "owner")
            ))?;
        }
        DevicesCommand::Revoke {
            asset_tag,
            personal: _,
            reason,
        } => {
            let asset_tag = asset_tag.as_deref().unwrap_or_default();
            let r: Value = client
                .post(&path(asset_tag, "/revoke"), &json!({ "reason": reason }))
                .await?;
            if out.json {
                return Ok(out.json(&r)?);
            }
            out.line(format!(
                "revoked {} agent certificate(s) of {asset_tag}",
                r["revoked_certificates"]
            ))?;
        }
        DevicesCommand::History { asset_tag } => {
            let rows: Vec<Value> = client.get(&path(asset_tag, "/history")).await?;
            if out.json {
                return Ok(out.json(&rows)?);
            }
            let table = rows
                .iter()
                .map(|r| vec![s(r, "at"), s(r, "actor"), s(r, "action"), s(r, "detail")])
                .collect::<Vec<_>>();
            out.table(&["AT", "BY", "ACTION", "DETAIL"], &table)?;
        }
    }
    Ok(())
}
