//! `lanyard-broker`: serve, migrate, check-config.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use lanyard_broker::config::{FileConfig, Overrides, Settings};
use lanyard_broker::logging::{LogControl, LogFormat};
use lanyard_broker::store::{redact_url, Store};
use lanyard_broker::Broker;

/// Lanyard broker: zero-trust remote access for staff, and the council's
/// laptop inventory.
///
/// Start it with `lanyard-broker serve`. On first start it creates, in the
/// data dir, the CA (ca.pem is what agents and the CLI trust), the token
/// signing key and a bootstrap admin token (DIR/admin-token) for the
/// `lanyard` CLI.
#[derive(Debug, Parser)]
#[command(
    name = "lanyard-broker",
    version,
    max_term_width = 100,
    after_help = "Examples:\n  lanyard-broker serve\n  lanyard-broker serve --data-dir /var/lib/lanyard --public-addr broker.council.example:4433\n  lanyard-broker check-config --config /etc/lanyard/broker.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker: the HTTPS admin API and the QUIC endpoint for agents.
    ///
    /// Prints one line when ready:
    /// `lanyard-broker ready api=https://HOST:PORT quic=HOST:PORT ca=sha256:HEX`.
    /// SIGTERM or Ctrl-C stops accepting and drains for up to --grace-period;
    /// a second signal exits at once. SIGHUP re-reads the config file and the
    /// --tls-cert files while serving; the log names what needs a restart.
    #[command(
        after_help = "Examples:\n  lanyard-broker serve\n  lanyard-broker serve --data-dir /var/lib/lanyard --api-listen 0.0.0.0:8443 \\\n      --public-addr broker.council.example:4433 --server-name broker.council.example\n  lanyard-broker serve --config /etc/lanyard/broker.toml"
    )]
    Serve(ServeArgs),
    /// Apply the store's migrations and exit (serve also does this at start).
    #[command(
        after_help = "Examples:\n  lanyard-broker migrate --data-dir /var/lib/lanyard\n  lanyard-broker migrate --database-url postgres://lanyard@db.internal/lanyard"
    )]
    Migrate(StoreArgs),
    /// Copy the SQLite store into FILE while the broker serves (a consistent
    /// snapshot; the broker goes on writing meanwhile).
    ///
    /// FILE must not exist. Restore by putting the copy in a fresh data dir
    /// as lanyard.db beside the key files (see the README's "Back up and
    /// restore"). PostgreSQL stores are backed up with pg_dump.
    #[command(
        after_help = "Examples:\n  lanyard-broker backup --data-dir /var/lib/lanyard /var/backups/lanyard-$(date +%F).db\n  lanyard-broker backup --config /etc/lanyard/broker.toml /var/backups/lanyard.db"
    )]
    Backup(BackupArgs),
    /// Make a new token-signing key (a new kid) in the data dir; new access
    /// tokens are signed with it once a broker reloads (SIGHUP) or restarts.
    ///
    /// Tokens signed with the older keys verify until they expire. Keys
    /// retired longer ago than the longest access-token life
    /// ([tokens] access_ttl plus clock leeway) are removed. With several
    /// nodes, copy the new file to every node's data dir, then reload each.
    #[command(
        after_help = "Examples:\n  lanyard-broker rotate-keys --data-dir /var/lib/lanyard\n  lanyard-broker rotate-keys --data-dir /var/lib/lanyard && systemctl reload lanyard-broker"
    )]
    RotateKeys(KeysArgs),
    /// Check a TOML config file and print the settings it gives.
    #[command(
        after_help = "Example:\n  lanyard-broker check-config --config /etc/lanyard/broker.toml"
    )]
    CheckConfig(CheckArgs),
    /// Print a shell completion script on standard output.
    #[command(
        after_help = "Examples:\n  lanyard-broker completions bash > /etc/bash_completion.d/lanyard-broker\n  lanyard-broker completions zsh > \"${fpath[1]}/_lanyard-broker\"\n  lanyard-broker completions fish > ~/.config/fish/completions/lanyard-broker.fish"
    )]
    Completions {
        /// The shell: bash, zsh or fish.
        shell: shell_docs::Shell,
    },
    /// Write the man pages (one per command) into DIR; the packages ship them.
    #[command(hide = true, after_help = "Example:\n  lanyard-broker man target/man")]
    Man {
        /// The directory to write lanyard-broker.1, lanyard-broker-serve.1, ... into.
        dir: PathBuf,
    },
}

/// Completions and man pages (shared with the other binaries).
#[path = "../../packaging/shell_docs.rs"]
mod shell_docs;

#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Where keys, the CA, the admin token and the SQLite database live
    /// [default: ./lanyard-data].
    #[arg(long, env = "LANYARD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Use PostgreSQL (postgres://...) instead of SQLite in the data dir
    /// [default: SQLite at DIR/lanyard.db].
    #[arg(
        long,
        env = "LANYARD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// A TOML config file; the Debian package installs one naming every key
    /// with its default [default: /etc/lanyard/broker.toml when present, else none].
    #[arg(long, env = "LANYARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// HTTPS admin API address [default: 127.0.0.1:8443]; port 0 picks a free port.
    #[arg(long, env = "LANYARD_API_LISTEN", value_name = "ADDR")]
    api_listen: Option<String>,
    /// Worker threads [default: 1]. One thread measured fastest for tunnels
    /// on small hosts (no hand-offs between threads per packet); more
    /// spread TLS handshakes and relays over cores on big ones.
    #[arg(long, env = "LANYARD_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// QUIC (UDP) address agents connect to [default: 0.0.0.0:4433]; port 0 picks a free port.
    #[arg(long, env = "LANYARD_QUIC_LISTEN", value_name = "ADDR")]
    quic_listen: Option<String>,
    /// A HOST:PORT laptops use to reach this node's QUIC listener (repeatable; this
    /// node's own first). Enrolment codes and each session's welcome carry these and the
    /// address of every live node in the store, and agents fail over between them
    /// [default: the QUIC address].
    #[arg(
        long,
        env = "LANYARD_PUBLIC_ADDR",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    public_addr: Vec<String>,
    /// Another DNS name or address for the broker's certificate (repeatable).
    #[arg(
        long = "server-name",
        env = "LANYARD_SERVER_NAMES",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    server_names: Vec<String>,
    /// Serve the API with this certificate chain (PEM) [default: a certificate
    /// from the broker's CA].
    #[arg(
        long,
        env = "LANYARD_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(
        long,
        env = "LANYARD_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// How long to drain live connections on SIGTERM [default: 30s].
    #[arg(long, env = "LANYARD_GRACE_PERIOD", value_name = "DURATION")]
    grace_period: Option<String>,
    /// This node's name among several sharing one PostgreSQL (letters, digits,
    /// `.`, `-`, `_`, `:`; up to 64) [default: HOSTNAME:QUIC_PORT].
    #[arg(long, env = "LANYARD_NODE", value_name = "NAME")]
    node: Option<String>,
}

#[derive(Debug, Args)]
struct BackupArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The new file to write the copy to (never overwritten).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Debug, Args)]
struct KeysArgs {
    /// The data dir holding the keys [default: ./lanyard-data].
    #[arg(long, env = "LANYARD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML config file (its data_dir and [tokens] access_ttl are used).
    #[arg(long, env = "LANYARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The TOML config file to check [default: /etc/lanyard/broker.toml].
    #[arg(long, env = "LANYARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The config file read when no --config (or LANYARD_CONFIG) is given, if it
/// exists: where the Debian package installs its sample.
const DEFAULT_CONFIG: &str = "/etc/lanyard/broker.toml";

/// The config file to read: the one given, else `default` if it exists.
fn config_path(given: Option<PathBuf>, default: &std::path::Path) -> Option<PathBuf> {
    given
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| default.is_file().then(|| default.to_owned()))
}

/// Writing to stdout failed; a closed one (`lanyard-broker check-config
/// --config F | head -1`) ends the command quietly.
#[derive(Debug, thiserror::Error)]
#[error("cannot write output: {0}")]
struct OutputError(std::io::Error);

/// `println!` that hands a failed write back as an [`OutputError`].
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(OutputError)?
    }};
}

fn settings(store: StoreArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Settings> {
    let file = match config_path(store.config, std::path::Path::new(DEFAULT_CONFIG)) {
        Some(path) => FileConfig::load(&path)?,
        None => FileConfig::default(),
    };
    let mut over = Overrides {
        data_dir: store.data_dir,
        database_url: store.database_url,
        ..Overrides::default()
    };
    if let Some(s) = serve {
        over.api_listen = s.api_listen.clone();
        over.quic_listen = s.quic_listen.clone();
        over.public_addrs = s.public_addr.clone();
        over.server_names = s.server_names.clone();
        over.tls_cert = s.tls_cert.clone();
        over.tls_key = s.tls_key.clone();
        over.grace_period = s.grace_period.clone();
        over.node = s.node.clone();
    }
    Ok(Settings::resolve(over, file)?)
}

async fn serve(args: ServeArgs, mut log: LogControl) -> anyhow::Result<()> {
    let first = settings(args.store.clone(), Some(&args))?;
    log.set(first.log_level.as_deref());
    let broker = Broker::start(first).await?;
    // Listening for signals before the ready line: a SIGTERM sent as soon
    // as the broker says it is ready must drain it, not kill it outright,
    // and a SIGHUP must reload, not kill.
    let mut signals = Signals::new()?;
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let state = broker.state().clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let started = std::time::Instant::now();
            let new = settings(args.store.clone(), Some(&args));
            let level_changed = match &new {
                Ok(s) => log.set(s.log_level.as_deref()),
                Err(_) => false,
            };
            let (done, errors) = lanyard_broker::reload::apply(&state, new);
            let mut applied = done.map(|d| d.applied).unwrap_or_default();
            if level_changed {
                applied.push("log_level");
            }
            tracing::info!(
                applied = %if applied.is_empty() { "nothing".to_owned() } else { applied.join(", ") },
                errors = errors.len(),
                took_ms = %format_args!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
                "SIGHUP: reloaded the configuration and certificate files"
            );
        }
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", broker.ready_line())?;
        out.flush()?;
    }
    // Both listeners are bound: connections made from now on are answered.
    tell_systemd(&format!("READY=1\nSTATUS={}", broker.ready_line()));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        signals.next().await;
        tell_systemd("STOPPING=1");
        let _ = first_tx.send(());
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    broker
        .serve(async {
            let _ = first_rx.await;
        })
        .await;
    Ok(())
}

/// Tells a `Type=notify` service manager `state`; a failure is logged, and
/// the broker goes on (systemd then times the start out and says why).
fn tell_systemd(state: &str) {
    if let Err(e) = lanyard_broker::systemd::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// SIGTERM and SIGINT, either of them.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

async fn migrate(args: StoreArgs) -> anyhow::Result<()> {
    let settings = settings(args, None)?;
    lanyard_broker::datadir::DataDir::open(&settings.data_dir)?;
    let url = settings.database_url();
    let store = Store::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store at {}: {e}", redact_url(&url)))?;
    let applied = store.migrate().await?;
    say!("migrations applied: {applied} (store {})", redact_url(&url));
    store.close().await;
    Ok(())
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let settings = settings(args.store, None)?;
    let url = settings.database_url();
    let done = lanyard_broker::backup::sqlite(&url, &args.file).await?;
    say!(
        "backup: {} ({} bytes, audit log up to row {}) in {} ms",
        args.file.display(),
        done.bytes,
        done.audit_seq,
        done.took.as_millis()
    );
    say!(
        "keep with it, from {}: ca.pem, ca-key.pem, token-signing-key*.pem, seal.key, audit-signing.key, quic-reset-key",
        settings.data_dir.display()
    );
    Ok(())
}

fn rotate_keys(args: KeysArgs) -> anyhow::Result<()> {
    use lanyard_broker::auth::tokens::{TokenKeys, LEEWAY_SECS};
    let settings = settings(
        StoreArgs {
            data_dir: args.data_dir,
            database_url: None,
            config: args.config,
        },
        None,
    )?;
    if !settings.data_dir.is_dir() {
        anyhow::bail!(
            "no data dir at {}; pass the broker's --data-dir",
            settings.data_dir.display()
        );
    }
    let dir = lanyard_broker::datadir::DataDir::open(&settings.data_dir)?;
    // A data dir without keys is not a broker's: nothing is made there.
    if !TokenKeys::any_in(&dir)? {
        anyhow::bail!(
            "no token-signing key in {}; is it the broker's data dir? (the broker makes the first key at its first start)",
            settings.data_dir.display()
        );
    }
    let token_life = settings.access_ttl + std::time::Duration::from_secs(2 * LEEWAY_SECS as u64);
    let rotated = TokenKeys::rotate(&dir, token_life)?;
    say!(
        "new token-signing key: kid {} ({})",
        rotated.kid,
        dir.file(&rotated.file).display()
    );
    say!(
        "tokens under these kids verify until they expire: {}",
        rotated.verifying.join(", ")
    );
    for file in &rotated.removed {
        say!(
            "removed {file}: retired more than {} ago, so no token it signed is still valid",
            humantime::format_duration(token_life)
        );
    }
    say!("reload running brokers to sign with it: SIGHUP (systemctl reload lanyard-broker) or restart; with several nodes, copy the file to each node's data dir first");
    Ok(())
}

fn check_config(args: CheckArgs) -> anyhow::Result<()> {
    let Some(path) = config_path(args.config, std::path::Path::new(DEFAULT_CONFIG)) else {
        anyhow::bail!(
            "no config file given and no {DEFAULT_CONFIG}; pass --config FILE (or set LANYARD_CONFIG)"
        );
    };
    let s = Settings::resolve(Overrides::default(), FileConfig::load(&path)?)?;
    say!("config ok: {}", path.display());
    say!("  data_dir      {}", s.data_dir.display());
    say!("  database      {}", redact_url(&s.database_url()));
    say!("  api_listen    {}", s.api_listen);
    say!("  quic_listen   {}", s.quic_listen);
    say!(
        "  metrics_listen {}",
        s.metrics_listen
            .map_or_else(|| "(off)".to_owned(), |a| format!("http://{a}/metrics"))
    );
    say!(
        "  public_addr   {}",
        if s.public_addrs.is_empty() {
            "(derived from quic_listen)".to_owned()
        } else {
            s.public_addrs.join(", ")
        }
    );
    say!(
        "  grace_period  {}",
        humantime::format_duration(s.grace_period)
    );
    say!(
        "  access_ttl    {}",
        humantime::format_duration(s.access_ttl)
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("lanyard-broker: error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = |result| report(result, format);
    let cli = match cli.command {
        Command::CheckConfig(args) => return report(check_config(args)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let script = shell_docs::completions(shell, Cli::command());
            return report(
                std::io::stdout()
                    .write_all(&script)
                    .map_err(|e| OutputError(e).into()),
            );
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            return report(
                shell_docs::man_pages(Cli::command(), &dir)
                    .map(|_| ())
                    .map_err(|e| {
                        anyhow::anyhow!("cannot write man pages to {}: {e}", dir.display())
                    }),
            );
        }
        command => Cli { command },
    };
    let log = lanyard_broker::logging::init(format);
    let threads = match &cli.command {
        Command::Serve(args) => args.threads.unwrap_or(1),
        _ => 1,
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(threads));
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(Err(e.into())),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args, log).await,
            Command::Migrate(args) => migrate(args).await,
            Command::RotateKeys(args) => rotate_keys(args),
            Command::Backup(args) => backup(args).await,
            Command::CheckConfig(_) | Command::Completions { .. } | Command::Man { .. } => {
                unreachable!("handled above")
            }
        }
    });
    report(result)
}

fn report(result: anyhow::Result<()>, format: LogFormat) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<OutputError>()
                .is_some_and(|o| o.0.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let mut line = chain[0].clone();
            for c in &chain[1..] {
                if !line.contains(c.as_str()) {
                    line.push_str(": ");
                    line.push_str(c);
                }
            }
            eprintln!(
                "{}",
                lanyard_broker::logging::fatal_line(format, "lanyard-broker", &line)
            );
            ExitCode::FAILURE
        }
    }
}

/// The help check the three binaries share (one file, no dependency).
#[cfg(test)]
#[path = "../../tests/src/help_check.rs"]
mod help_check;

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_has_an_example_and_every_argument_a_description() {
        crate::help_check::assert_complete(&super::Cli::command());
    }

    /// Without --config the default file is read when it exists, and only then.
    #[test]
    fn the_default_config_file_is_read_only_when_present() {
        use std::path::PathBuf;
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("broker.toml");
        assert_eq!(super::config_path(None, &default), None);
        std::fs::write(&default, "").unwrap();
        assert_eq!(super::config_path(None, &default), Some(default.clone()));
        let given = PathBuf::from("/elsewhere.toml");
        assert_eq!(
            super::config_path(Some(given.clone()), &default),
            Some(given)
        );
        assert_eq!(
            super::config_path(Some(PathBuf::new()), &default),
            Some(default)
        );
    }

    /// Every serve option shows its default, as the README's table does.
    #[test]
    fn serve_help_shows_every_default() {
        let mut cmd = super::Cli::command();
        cmd.build();
        let serve = cmd.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        let data_dir = format!("[default: {}]", lanyard_broker::config::DEFAULT_DATA_DIR);
        assert!(help.contains(&data_dir), "{help}");
        for arg in serve.get_arguments() {
            let id = arg.get_id().as_str();
            if ["help", "config", "server_names", "tls_key"].contains(&id) {
                continue;
            }
            let text = arg.get_long_help().or(arg.get_help()).unwrap().to_string();
            assert!(
                text.contains("[default: "),
                "serve --help: {id} shows no default: {text}"
            );
        }
    }
}
