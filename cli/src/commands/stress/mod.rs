//! `lanyard stress`: N simulated agents with real QUIC connections, real
//! enrolment and sign-in, real tunnel streams whose bytes are checked;
//! a progress line on a terminal, a summary, `--json-out` and an HTML
//! `--report`. Test identities are made through the admin API and disabled
//! or removed afterwards.

mod report;
pub mod sim;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{encode, Client};
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, clap::Args)]
pub struct StressArgs {
    /// How many simulated agents.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub agents: u32,
    /// How long each agent stays connected once all have started.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Agents start spread evenly over this time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub ramp: Duration,
    /// An existing app that echoes what it is sent. Without it, an echo app
    /// on this host is started and added for the run (the broker must be
    /// able to reach 127.0.0.1 here, as on a single test host).
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Tunnel streams each agent opens, one after another.
    #[arg(long, default_value_t = 1)]
    pub streams_per_agent: u32,
    /// Bytes sent on each stream (and checked on the way back).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub bytes_per_stream: u64,
    /// Write an HTML report with charts over time.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Write the figures as JSON.
    #[arg(long, value_name = "FILE.json")]
    pub json_out: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct App {
    name: String,
    allow_groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Code {
    code: String,
}

/// A local echo app for the run.
async fn echo_app() -> Result<std::net::SocketAddr, CliError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// What the run made, to undo afterwards.
struct Made {
    group: String,
    person: String,
    app: Option<String>,
}

async fn clean_up(client: &Client, made: &Made) {
    let person = encode(&made.person);
    let _ = client
        .post::<serde_json::Value>(&format!("/api/v1/staff/{person}/disable"), &json!({}))
        .await;
    if let Some(app) = &made.app {
        let _ = client
            .delete(&format!("/api/v1/apps/{}", encode(app)))
            .await;
    }
    let _ = client
        .delete(&format!("/api/v1/groups/{}", encode(&made.group)))
        .await;
}

fn progress(line: &str) {
    use std::io::{IsTerminal, Write};
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}

/// Live counts for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    pub started: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

pub async fn run(cli: &Cli, args: &StressArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    let run_id = format!(
        "{:06x}",
        std::process::id() ^ (Instant::now().elapsed().as_nanos() as u32) ^ 0x5a5a5a
    );
    let made = Made {
        group: format!("stress-{run_id}"),
        person: format!("stress.{run_id}"),
        app: None,
    };
    let password = format!("Stress-{run_id}-{}", std::process::id());
    let result = drive(&client, args, made, &password, out).await;
    if let Err(e) = &result {
        progress("");
        eprintln!();
        eprintln!("lanyard: stress run stopped: {e}");
    }
    result
}

async fn drive(
    client: &Client,
    args: &StressArgs,
    mut made: Made,
    password: &str,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let mut groups = vec![made.group.clone()];
    let app = match &args.app {
        Some(name) => {
            let apps: Vec<App> = client.get("/api/v1/apps").await?;
            let app = apps.into_iter().find(|a| &a.name == name).ok_or_else(|| {
                CliError::Usage(format!("no app named {name}; see `lanyard apps list`"))
            })?;
            groups.extend(app.allow_groups);
            app.name
        }
        None => String::new(),
    };
    client
        .post::<serde_json::Value>(
            "/api/v1/groups",
            &json!({ "name": made.group, "description": "lanyard stress run" }),
        )
        .await?;
    let setup = async {
        let app = if app.is_empty() {
            let addr = echo_app().await?;
            let name = made.group.clone();
            client
                .post::<serde_json::Value>(
                    "/api/v1/apps",
                    &json!({ "name": name, "target": addr.to_string(), "allow_groups": [made.group], "device_kind": "any" }),
                )
                .await?;
            made.app = Some(name.clone());
            name
        } else {
            app
        };
        client
            .post::<serde_json::Value>(
                "/api/v1/staff",
                &json!({ "username": made.person, "name": "Stress test", "priority": 3,
                         "groups": groups, "password": password }),
            )
            .await?;
        let mut codes = Vec::with_capacity(args.agents as usize);
        for i in 0..args.agents {
            progress(&format!(
                "preparing enrolment codes {}/{}",
                i + 1,
                args.agents
            ));
            let c: Code = client
                .post(
                    "/api/v1/enrolment-codes",
                    &json!({ "personal": made.person, "ttl": "1h" }),
                )
                .await?;
            codes.push(
                lanyard_proto::EnrolmentCode::decode(&c.code)
                    .map_err(|e| CliError::Failed(format!("the broker gave a bad code: {e}")))?,
            );
        }
        Ok::<_, CliError>((app, codes))
    };
    let (app, codes) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            clean_up(client, &made).await;
            return Err(e);
        }
    };
    let result = swarm(args, &made, password, &app, codes, out).await;
    clean_up(client, &made).await;
    result
}

async fn swarm(
    args: &StressArgs,
    made: &Made,
    password: &str,
    app: &str,
    codes: Vec<lanyard_proto::EnrolmentCode>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (addr, _) = lanyard_agent::client::resolve(&codes[0].broker_addr)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let endpoint =
        lanyard_agent::client::endpoint(addr).map_err(|e| CliError::Failed(e.to_string()))?;
    let epoch = Instant::now();
    let hold_until = epoch + args.ramp + args.duration;
    let live = Arc::new(Live::default());
    let n = codes.len() as u32;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, code) in codes.into_iter().enumerate() {
        let plan = sim::Plan {
            code,
            username: made.person.clone(),
            password: password.to_owned(),
            app: app.to_owned(),
            streams: args.streams_per_agent,
            bytes_per_stream: args.bytes_per_stream,
            hold_until,
        };
        let start_at = epoch + args.ramp.mul_f64(f64::from(i as u32) / f64::from(n));
        let (endpoint, live) = (endpoint.clone(), live.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(start_at.into()).await;
            live.started.fetch_add(1, Relaxed);
            let outcome = sim::run(endpoint, plan, epoch, i as u64, &live).await;
            if outcome.connected.is_none() {
                live.failed.fetch_add(1, Relaxed);
            }
            outcome
        });
    }
    let mut outcomes = Vec::with_capacity(n as usize);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(o)) => outcomes.push(o),
                Some(Err(e)) => return Err(CliError::Failed(format!("a simulated agent crashed: {e}"))),
                None => break,
            },
            _ = tick.tick() => {
                let total = (args.ramp + args.duration).as_secs_f64().max(0.001);
                let done = (epoch.elapsed().as_secs_f64() / total).min(1.0);
                let bar: String = (0..30).map(|i| if (i as f64) < done * 30.0 { '#' } else { '.' }).collect();
                progress(&format!(
                    "[{bar}] {:>5.1}s  started {}/{n}  connected {}  failed {}  verified {:.1} MB",
                    epoch.elapsed().as_secs_f64(),
                    live.started.load(Relaxed),
                    live.connected.load(Relaxed),
                    live.failed.load(Relaxed),
                    live.bytes.load(Relaxed) as f64 / 1e6,
                ));
            }
        }
    }
    progress("");
    endpoint.close(0u32.into(), b"stress run over");
    let summary = report::summarise(
        &outcomes,
        app,
        args.duration,
        args.ramp,
        args.streams_per_agent,
        args.bytes_per_stream,
        epoch.elapsed(),
    );
    if let Some(path) = &args.json_out {
        let text =
            serde_json::to_string_pretty(&summary).map_err(|e| CliError::Failed(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, report::html(&summary))
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    if out.json {
        out.json(&summary)?;
    } else {
        out.line(report::table(&summary).trim_end())?;
    }
    if summary.agents_failed > 0 || summary.agents_lost > 0 || summary.streams_failed > 0 {
        return Err(CliError::Failed(format!(
            "{} of {} agents failed, {} lost their connection for good, {} streams failed",
            summary.agents_failed,
            summary.agents_requested,
            summary.agents_lost,
            summary.streams_failed
        )));
    }
    Ok(())
}
