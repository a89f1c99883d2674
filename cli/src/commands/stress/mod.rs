//! `lanyard stress`: N simulated agents with real QUIC connections, real
//! enrolment and sign-in, real tunnel streams whose bytes are checked;
//! a progress line on a terminal, a summary, `--json-out` and an HTML
//! `--report`. Test identities are made through the admin API and removed
//! afterwards, also after Ctrl-C (`--keep` keeps them).

mod capacity;
mod report;
pub mod sim;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{encode, Client};
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, clap::Args)]
pub struct StressArgs {
    /// How many simulated agents.
    #[arg(
        long,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        required_unless_present = "find_capacity",
        conflicts_with = "find_capacity"
    )]
    pub agents: Option<u32>,
    /// Find the broker's capacity: runs of more and more agents (steps of
    /// --step, each held --duration) until connect or stream-open p99 passes
    /// its objective or agents fail; reports the most agents held within the
    /// objectives and what gave out first.
    #[arg(long)]
    pub find_capacity: bool,
    /// The connect objective (handshake, sign-in and session), p99.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub slo_connect_p99: Duration,
    /// The stream-open objective, p99.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub slo_stream_p99: Duration,
    /// With --find-capacity: stop here even if nothing gave out.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_agents: u32,
    /// With --find-capacity: agents added at each step [default: --max-agents / 10].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub step: Option<u32>,
    /// Enrol and sign every simulated agent in before the clock starts (not
    /// timed), so that a connect is the handshake and the session, as for
    /// staff whose agent already holds a sign-in (the usual morning).
    /// Without it every connect includes a password check.
    #[arg(long)]
    pub signed_in: bool,
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
    /// Tunnel streams each agent opens, one after another, once connected.
    #[arg(long, default_value_t = 1)]
    pub streams_per_agent: u32,
    /// Then, while connected, a tunnel stream every 60/N seconds per agent
    /// (the agents spread evenly), so that the hold carries a steady load
    /// and is measured; 0 for none.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=600))]
    pub streams_per_minute: u32,
    /// Bytes sent on each stream (and checked on the way back).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub bytes_per_stream: u64,
    /// Write an HTML report with charts over time.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Write the figures as JSON.
    #[arg(long, value_name = "FILE.json")]
    pub json_out: Option<PathBuf>,
    /// Keep the test person, group, echo app and enrolled devices for
    /// inspection instead of removing them at the end.
    #[arg(long)]
    pub keep: bool,
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

/// What the run made, to undo afterwards: only what it made itself.
#[derive(Debug, Clone)]
struct Made {
    group: String,
    person: String,
    group_made: bool,
    person_made: bool,
    app: Option<String>,
}

impl Made {
    fn anything(&self) -> bool {
        self.group_made || self.person_made || self.app.is_some()
    }

    fn record(&self, outcome: &str) -> report::Cleanup {
        report::Cleanup {
            outcome: outcome.into(),
            person: self.person.clone(),
            group: self.group.clone(),
            app: self.app.clone(),
            ..report::Cleanup::default()
        }
    }

    /// The commands that remove it by hand.
    fn removal_commands(&self) -> String {
        let mut steps = Vec::new();
        if self.person_made {
            steps.push(format!("lanyard staff disable {}", self.person));
            steps.push(format!("lanyard staff remove {}", self.person));
        }
        if let Some(app) = &self.app {
            steps.push(format!("lanyard apps remove {app}"));
        }
        if self.group_made {
            steps.push(format!("lanyard groups remove {}", self.group));
        }
        steps.join(" && ")
    }
}

/// Removes what the run made, each removal one audited change: the test
/// person is disabled (ending any session still open), their enrolled
/// devices revoked and removed, then the app, the person and the group.
async fn clean_up(client: &Client, made: &Made) -> report::Cleanup {
    let mut done = made.record("removed");
    let person = format!("/api/v1/staff/{}", encode(&made.person));
    let mut problems = Vec::new();
    if made.person_made {
        if let Err(e) = removed(
            client
                .post::<serde_json::Value>(&format!("{person}/disable"), &json!({}))
                .await,
        ) {
            problems.push(problem(&format!("disable {}", made.person), e));
        }
        match removed(
            client
                .call::<serde_json::Value>(Method::DELETE, &format!("{person}/devices"), None)
                .await,
        ) {
            Ok(v) => {
                done.devices_removed = v.and_then(|v| v["removed_devices"].as_u64()).unwrap_or(0)
            }
            Err(e) => problems.push(problem(
                &format!("remove the devices of {}", made.person),
                e,
            )),
        }
    }
    if let Some(app) = &made.app {
        if let Err(e) = removed(
            client
                .delete(&format!("/api/v1/apps/{}", encode(app)))
                .await,
        ) {
            problems.push(problem(&format!("remove app {app}"), e));
        }
    }
    if made.person_made {
        if let Err(e) = removed(client.delete(&person).await) {
            problems.push(problem(&format!("remove {}", made.person), e));
        }
    }
    if made.group_made {
        if let Err(e) = removed(
            client
                .delete(&format!("/api/v1/groups/{}", encode(&made.group)))
                .await,
        ) {
            problems.push(problem(&format!("remove group {}", made.group), e));
        }
    }
    if !problems.is_empty() {
        done.outcome = "incomplete".into();
        done.problems = problems;
    }
    done
}

fn problem(what: &str, e: crate::ClientError) -> String {
    format!("cannot {what}: {e}")
}

/// Gone already (or never made, when Ctrl-C cut its request short) is fine.
fn removed<T>(answer: Result<T, crate::ClientError>) -> Result<Option<T>, crate::ClientError> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(crate::ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
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

/// The broker's version, node and capacity, as `GET /api/v1/load` gives
/// them (an older broker does not name its version).
async fn broker_info(client: &Client) -> report::Broker {
    #[derive(Debug, Deserialize)]
    struct Load {
        node: Option<String>,
        version: Option<String>,
        capacity: Option<u64>,
    }
    let mut broker = report::Broker {
        url: client.url().to_owned(),
        ..report::Broker::default()
    };
    if let Ok(load) = client.get::<Load>("/api/v1/load").await {
        broker.version = load.version;
        broker.node = load.node;
        broker.capacity = load.capacity;
    }
    broker
}

/// One run of `agents` simulated agents: makes the test identities, runs,
/// and removes what it made (unless `--keep`), saying so on stderr.
async fn measured(
    client: &Client,
    args: &StressArgs,
    agents: u32,
) -> (Result<report::Summary, CliError>, Option<report::Cleanup>) {
    let run_id = format!(
        "{:06x}",
        std::process::id() ^ (Instant::now().elapsed().as_nanos() as u32) ^ 0x5a5a5a
    );
    let made = Mutex::new(Made {
        group: format!("stress-{run_id}"),
        person: format!("stress.{run_id}"),
        group_made: false,
        person_made: false,
        app: None,
    });
    let password = format!("Stress-{run_id}-{}", std::process::id());
    let settings = report::Settings {
        app: args.app.clone().unwrap_or_default(),
        duration: args.duration,
        ramp: args.ramp,
        streams_per_agent: args.streams_per_agent,
        streams_per_minute: args.streams_per_minute,
        bytes_per_stream: args.bytes_per_stream,
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        broker: broker_info(client).await,
    };
    // Ctrl-C stops the run (its simulated agents hang up) and the clean-up
    // below still runs; a second Ctrl-C stops the clean-up.
    let result = tokio::select! {
        r = drive(client, args, agents, &made, &password, settings) => r,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    };
    progress("");
    let made = made.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let cleanup = if !made.anything() {
        None
    } else if args.keep {
        Some(made.record("kept"))
    } else {
        progress("removing the test person, group, app and devices the run made");
        let done = tokio::select! {
            c = clean_up(client, &made) => c,
            _ = tokio::signal::ctrl_c() => {
                let mut c = made.record("incomplete");
                c.problems.push("interrupted while removing what the run made".into());
                c
            }
        };
        progress("");
        Some(done)
    };
    if let Some(c) = &cleanup {
        match c.outcome.as_str() {
            "kept" => eprintln!(
                "lanyard: --keep: left for inspection: person {}, group {}{}, and the devices it enrolled \
                 (lanyard devices list --holder {}). Remove them with: {}",
                made.person,
                made.group,
                made.app.as_ref().map(|a| format!(", app {a}")).unwrap_or_default(),
                made.person,
                made.removal_commands()
            ),
            "removed" => {}
            _ => eprintln!(
                "lanyard: not everything the run made was removed ({}). Remove the rest with: {}",
                c.problems.join("; "),
                made.removal_commands()
            ),
        }
    }
    (result, cleanup)
}

pub async fn run(cli: &Cli, args: &StressArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    if args.find_capacity {
        return capacity::run(&client, args, out).await;
    }
    let agents = args.agents.ok_or_else(|| {
        CliError::Usage("say how many agents (--agents N), or use --find-capacity".into())
    })?;
    let (result, cleanup) = measured(&client, args, agents).await;
    let left_behind = cleanup.as_ref().is_some_and(|c| c.outcome == "incomplete");
    let mut summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!();
            match &cleanup {
                Some(c) if c.outcome == "removed" => eprintln!(
                    "lanyard: stress run stopped: {e}; removed what it made ({} enrolled devices)",
                    c.devices_removed
                ),
                _ => eprintln!("lanyard: stress run stopped: {e}"),
            }
            return Err(e);
        }
    };
    summary.cleanup = cleanup;
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
        out.lines(report::table(&summary).trim_end())?;
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
    if left_behind {
        return Err(CliError::Failed(
            "the run passed, but not everything it made was removed".into(),
        ));
    }
    Ok(())
}

/// Makes something, noted in `made` from before the request is sent until
/// the broker refuses it: if Ctrl-C cuts the request short, the clean-up
/// still tries to remove it (and "not found" is then fine).
async fn make<T>(
    made: &Mutex<Made>,
    mark: impl Fn(&mut Made, bool),
    request: impl std::future::Future<Output = Result<T, crate::ClientError>>,
) -> Result<T, crate::ClientError> {
    mark(&mut made.lock().unwrap_or_else(|p| p.into_inner()), true);
    let answer = request.await;
    if answer.is_err() {
        mark(&mut made.lock().unwrap_or_else(|p| p.into_inner()), false);
    }
    answer
}

async fn drive(
    client: &Client,
    args: &StressArgs,
    agents: u32,
    made: &Mutex<Made>,
    password: &str,
    mut settings: report::Settings,
) -> Result<report::Summary, CliError> {
    let (group, person) = {
        let m = made.lock().unwrap_or_else(|p| p.into_inner());
        (m.group.clone(), m.person.clone())
    };
    make(
        made,
        |m, yes| m.group_made = yes,
        client.post::<serde_json::Value>(
            "/api/v1/groups",
            &json!({ "name": group, "description": "lanyard stress run" }),
        ),
    )
    .await?;
    let mut groups = vec![group.clone()];
    let app = match &args.app {
        Some(name) => {
            let apps: Vec<App> = client.get("/api/v1/apps").await?;
            let app = apps.into_iter().find(|a| &a.name == name).ok_or_else(|| {
                CliError::Usage(format!("no app named {name}; see `lanyard apps list`"))
            })?;
            groups.extend(app.allow_groups);
            app.name
        }
        None => {
            let addr = echo_app().await?;
            make(
                made,
                |m, yes| m.app = yes.then(|| m.group.clone()),
                client.post::<serde_json::Value>(
                    "/api/v1/apps",
                    &json!({ "name": group, "target": addr.to_string(), "allow_groups": [group], "device_kind": "any" }),
                ),
            )
            .await?;
            group.clone()
        }
    };
    make(
        made,
        |m, yes| m.person_made = yes,
        client.post::<serde_json::Value>(
            "/api/v1/staff",
            &json!({ "username": person, "name": "Stress test", "priority": 3,
                     "groups": groups, "password": password }),
        ),
    )
    .await?;
    let mut codes = Vec::with_capacity(agents as usize);
    for i in 0..agents {
        progress(&format!("preparing enrolment codes {}/{agents}", i + 1));
        let c: Code = client
            .post(
                "/api/v1/enrolment-codes",
                &json!({ "personal": person, "ttl": "1h" }),
            )
            .await?;
        codes.push(
            lanyard_proto::EnrolmentCode::decode(&c.code)
                .map_err(|e| CliError::Failed(format!("the broker gave a bad code: {e}")))?,
        );
    }
    settings.app = app.clone();
    swarm(args, &person, password, &app, codes, settings).await
}

/// `--signed-in`: every agent enrolled and signed in, a few at a time,
/// before the clock starts; any that fails stops the run (its figures would
/// mean something else).
async fn prepare_all(
    endpoint: &quinn::Endpoint,
    plans: &[sim::Plan],
) -> Result<Vec<Option<sim::Prepared>>, CliError> {
    const AT_ONCE: usize = 8;
    let n = plans.len();
    let mut out: Vec<Option<sim::Prepared>> = Vec::with_capacity(n);
    out.resize_with(n, || None);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let mut done = 0usize;
    while done < n {
        while next < n && tasks.len() < AT_ONCE {
            let (endpoint, plan, i) = (endpoint.clone(), plans[next].clone(), next);
            tasks.spawn(async move { (i, sim::prepare(&endpoint, &plan).await) });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, prepared) =
            joined.map_err(|e| CliError::Failed(format!("a simulated agent crashed: {e}")))?;
        let prepared = prepared.map_err(|e| {
            CliError::Failed(format!(
                "signing the simulated agents in before the run: {e}"
            ))
        })?;
        out[i] = Some(prepared);
        done += 1;
        progress(&format!(
            "enrolling and signing in before the run {done}/{n}"
        ));
    }
    progress("");
    Ok(out)
}

async fn swarm(
    args: &StressArgs,
    person: &str,
    password: &str,
    app: &str,
    codes: Vec<lanyard_proto::EnrolmentCode>,
    settings: report::Settings,
) -> Result<report::Summary, CliError> {
    let (addr, _) = lanyard_agent::client::resolve(codes[0].first_addr())
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let endpoint =
        lanyard_agent::client::endpoint(addr).map_err(|e| CliError::Failed(e.to_string()))?;
    let n = codes.len() as u32;
    let plans: Vec<sim::Plan> = codes
        .into_iter()
        .map(|code| sim::Plan {
            code,
            username: person.to_owned(),
            password: password.to_owned(),
            app: app.to_owned(),
            streams: args.streams_per_agent,
            bytes_per_stream: args.bytes_per_stream,
            streams_per_minute: args.streams_per_minute,
            hold_until: Instant::now(),
        })
        .collect();
    let mut prepared: Vec<Option<sim::Prepared>> = Vec::with_capacity(plans.len());
    if args.signed_in {
        prepared = prepare_all(&endpoint, &plans).await?;
    } else {
        prepared.resize_with(plans.len(), || None);
    }
    let epoch = Instant::now();
    let hold_until = epoch + args.ramp + args.duration;
    let live = Arc::new(Live::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut plan, prepared)) in plans.into_iter().zip(prepared).enumerate() {
        plan.hold_until = hold_until;
        let start_at = epoch + args.ramp.mul_f64(f64::from(i as u32) / f64::from(n));
        let (endpoint, live) = (endpoint.clone(), live.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(start_at.into()).await;
            live.started.fetch_add(1, Relaxed);
            let outcome = sim::run(endpoint, plan, prepared, epoch, i as u64, &live).await;
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
                    "[{bar}] {:>5.1}s  started {}/{n}  connected {}  failed {}  verified {}",
                    epoch.elapsed().as_secs_f64(),
                    live.started.load(Relaxed),
                    live.connected.load(Relaxed),
                    live.failed.load(Relaxed),
                    report::human_bytes(live.bytes.load(Relaxed) as f64),
                ));
            }
        }
    }
    progress("");
    endpoint.close(0u32.into(), b"stress run over");
    Ok(report::summarise(&outcomes, &settings, epoch.elapsed()))
}
