//! `lanyard apps add/set/list/remove`

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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Protocol {
    /// TCP streams (web apps, most services).
    Tcp,
    /// UDP datagrams (softphones: SIP and RTP).
    Udp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Add an internal app.
    #[command(after_help = "Examples:
  lanyard apps add hr-system --target hr.internal:443 --allow-group hr --device-kind managed
  lanyard apps add hr-web --target 10.0.0.5:80 --host hr.council.internal --allow-group hr
  lanyard apps add softphone --target pbx.internal:5060 --protocol udp --allow-group contact-centre")]
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
        /// A name staff know the app by, e.g. hr.council.internal (repeatable,
        /// at most 16): the agent's local proxy and PAC file send
        /// NAME:PORT (the target's port) to this app.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// How the app is reached.
        #[arg(long, value_enum, default_value = "tcp")]
        protocol: Protocol,
        /// A UDP app's flow (one local peer's datagrams) ends after this long
        /// without a datagram either way [default: 5m].
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        flow_idle_timeout: Option<std::time::Duration>,
    },
    /// Change an app's target, allowed groups, device kind, host names or
    /// protocol; live tunnels the new rule no longer allows close at once.
    #[command(after_help = "Examples:
  lanyard apps set hr-system --device-kind managed
  lanyard apps set hr-system --allow-group hr --allow-group payroll
  lanyard apps set hr-system --target hr2.internal:443
  lanyard apps set hr-web --host hr.council.internal --host hr
  lanyard apps set hr-web --no-hosts
  lanyard apps set softphone --flow-idle-timeout 10m")]
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
        /// The names it is known by from now on, replacing the old ones
        /// (repeatable, at most 16).
        #[arg(long = "host", value_name = "NAME", conflicts_with = "no_hosts")]
        hosts: Vec<String>,
        /// Remove all its host names.
        #[arg(long)]
        no_hosts: bool,
        /// How it is reached from now on.
        #[arg(long, value_enum)]
        protocol: Option<Protocol>,
        /// A UDP flow's idle timeout from now on.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        flow_idle_timeout: Option<std::time::Duration>,
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
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default = "tcp")]
    protocol: String,
    #[serde(default)]
    flow_idle_secs: u64,
}

fn tcp() -> String {
    "tcp".into()
}

/// An app's protocol, with a UDP app's flow idle timeout.
fn protocol_of(app: &App) -> String {
    if app.protocol == "udp" {
        let idle = std::time::Duration::from_secs(app.flow_idle_secs);
        format!("udp, idle {}", humantime::format_duration(idle))
    } else {
        app.protocol.clone()
    }
}

/// How an app is shown in one line: name, target, protocol when not TCP,
/// host names when any.
fn describe(app: &App) -> String {
    let mut s = format!("{} -> {}", app.name, app.target);
    if app.protocol != "tcp" {
        s.push_str(&format!(" ({})", protocol_of(app)));
    }
    if !app.hosts.is_empty() {
        s.push_str(&format!(" known as {}", join(&app.hosts)));
    }
    s
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
            hosts,
            protocol,
            flow_idle_timeout,
        } => {
            let kind = kind_name(device_kind);
            let mut body = json!({
                "name": name, "target": target, "allow_groups": allow_groups,
                "device_kind": kind, "hosts": hosts, "protocol": protocol.as_str(),
            });
            if let Some(idle) = flow_idle_timeout {
                body["flow_idle_secs"] = json!(idle.as_secs());
            }
            let app: App = client.post("/api/v1/apps", &body).await?;
            if out.json {
                return Ok(out.json(&app)?);
            }
            out.line(format!(
                "added app {} for groups {} on {} devices",
                describe(&app),
                join(&app.allow_groups),
                app.device_kind
            ))?;
        }
        AppsCommand::Set {
            name,
            target,
            allow_groups,
            device_kind,
            hosts,
            no_hosts,
            protocol,
            flow_idle_timeout,
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
            if !hosts.is_empty() || *no_hosts {
                body.insert("hosts".into(), json!(hosts));
            }
            if let Some(p) = protocol {
                body.insert("protocol".into(), json!(p.as_str()));
            }
            if let Some(idle) = flow_idle_timeout {
                body.insert("flow_idle_secs".into(), json!(idle.as_secs()));
            }
            if body.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: give --target, --allow-group, --device-kind, --host, --no-hosts, --protocol or --flow-idle-timeout".into(),
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
                "app {} for groups {} on {} devices",
                describe(&app),
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
                        protocol_of(a),
                        join(&a.hosts),
                        join(&a.allow_groups),
                        a.device_kind.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &["APP", "TARGET", "PROTOCOL", "HOSTS", "GROUPS", "DEVICES"],
                &rows,
            )?;
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
