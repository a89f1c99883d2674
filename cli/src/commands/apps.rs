//! `lanyard apps add/list/remove`

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::encode;
use crate::output::{join, Out};
use crate::{Cli, CliError};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DeviceKind {
    /// Council laptops only.
    Managed,
    /// Staff's own devices only.
    Personal,
    /// Either.
    Any,
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Add an internal app.
    #[command(after_help = "Examples:
  lanyard apps add hr-system --target hr.internal:443 --allow-group hr --device-kind managed
  lanyard apps add softphone --target pbx.internal:5061 --allow-group contact-centre")]
    Add {
        /// The app's name, as agents show it: a-z, 0-9, '.', '-' or '_'.
        name: String,
        /// Where the app listens inside the network.
        #[arg(long, value_name = "HOST:PORT")]
        target: String,
        /// A group whose members may reach it (repeatable).
        #[arg(long = "allow-group", value_name = "G")]
        allow_groups: Vec<String>,
        /// Which devices may reach it.
        #[arg(long, value_enum, default_value = "any")]
        device_kind: DeviceKind,
    },
    /// Change an app's target, allowed groups or device kind; live tunnels
    /// the new rule no longer allows close at once.
    #[command(after_help = "Examples:
  lanyard apps set hr-system --device-kind managed
  lanyard apps set hr-system --allow-group hr --allow-group payroll
  lanyard apps set hr-system --target hr2.internal:443")]
    Set {
        /// The app to change.
        name: String,
        /// Where the app now listens.
        #[arg(long, value_name = "HOST:PORT")]
        target: Option<String>,
        /// The groups whose members may reach it from now on, replacing the
        /// old ones (repeatable).
        #[arg(long = "allow-group", value_name = "G")]
        allow_groups: Vec<String>,
        /// Which devices may reach it from now on.
        #[arg(long, value_enum)]
        device_kind: Option<DeviceKind>,
    },
    /// List apps.
    #[command(after_help = "Examples:
  lanyard apps list
  lanyard apps list --json")]
    List,
    /// Remove an app; its live tunnels close.
    #[command(after_help = "Example:
  lanyard apps remove hr-system")]
    Remove {
        /// The app to remove.
        name: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct App {
    name: String,
    target: String,
    allow_groups: Vec<String>,
    device_kind: String,
}

fn kind_name(k: &DeviceKind) -> &'static str {
    match k {
        DeviceKind::Managed => "managed",
        DeviceKind::Personal => "personal",
        DeviceKind::Any => "any",
    }
}

pub async fn run(cli: &Cli, cmd: &AppsCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        AppsCommand::Add {
            name,
            target,
            allow_groups,
            device_kind,
        } => {
            let kind = kind_name(device_kind);
            let body = json!({ "name": name, "target": target, "allow_groups": allow_groups, "device_kind": kind });
            let app: App = client.post("/api/v1/apps", &body).await?;
            if out.json {
                return Ok(out.json(&app)?);
            }
            out.line(format!(
                "added app {} -> {} for groups {} on {} devices",
                app.name,
                app.target,
                join(&app.allow_groups),
                app.device_kind
            ))?;
        }
        AppsCommand::Set {
            name,
            target,
            allow_groups,
            device_kind,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(t) = target {
                body.insert("target".into(), json!(t));
            }
            if !allow_groups.is_empty() {
                body.insert("allow_groups".into(), json!(allow_groups));
            }
            if let Some(k) = device_kind {
                body.insert("device_kind".into(), json!(kind_name(k)));
            }
            if body.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: give --target, --allow-group or --device-kind".into(),
                ));
            }
            let app: App = client
                .call(
                    http::Method::PATCH,
                    &format!("/api/v1/apps/{}", encode(name)),
                    Some((
                        "application/json",
                        serde_json::to_vec(&serde_json::Value::Object(body))
                            .map_err(|e| CliError::Failed(e.to_string()))?,
                    )),
                )
                .await?;
            if out.json {
                return Ok(out.json(&app)?);
            }
            out.line(format!(
                "app {} -> {} for groups {} on {} devices",
                app.name,
                app.target,
                join(&app.allow_groups),
                app.device_kind
            ))?;
        }
        AppsCommand::List => {
            let apps: Vec<App> = client.get("/api/v1/apps").await?;
            if out.json {
                return Ok(out.json(&apps)?);
            }
            let rows = apps
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.target.clone(),
                        join(&a.allow_groups),
                        a.device_kind.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(&["APP", "TARGET", "GROUPS", "DEVICES"], &rows)?;
        }
        AppsCommand::Remove { name } => {
            client
                .delete(&format!("/api/v1/apps/{}", encode(name)))
                .await?;
            out.done(
                serde_json::json!({ "app": name, "removed": true }),
                format!("removed app {name}"),
            )?;
        }
    }
    Ok(())
}
