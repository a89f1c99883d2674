//! `lanyard-agent`: see `lanyard-agent --help`.

#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lanyard_agent::account;
use lanyard_agent::identity::{now_secs, TOKENS_FILE};
use lanyard_agent::logging::LogFormat;
use lanyard_agent::state::{default_dir, StateDir};
use lanyard_agent::up::{self, Forward, UpConfig, UpEvent, UpStatus};

/// Lanyard agent: reach the council's internal apps from home.
///
/// Enrol this laptop once with the code ICT gives you, sign in, then run
/// `lanyard-agent up` and use the local addresses it prints.
#[derive(Debug, Parser)]
#[command(
    name = "lanyard-agent",
    version,
    max_term_width = 100,
    after_help = "Examples:\n  lanyard-agent enroll lye1.AAAA...\n  lanyard-agent login j.smith\n  lanyard-agent up\n  lanyard-agent status\n\nExit status:\n  0  done, or `up` stopped by SIGTERM or Ctrl-C\n  1  an error that may pass (the network, the broker busy or down): worth retrying\n  2  bad usage\n  3  enrol again: this device is not enrolled, or was revoked, or its certificate ran out\n  4  sign in again: nobody is signed in, or the sign-in was ended (logout, ICT)\n  5  the broker refuses this person or device until ICT changes something"
)]
struct Cli {
    /// Where the device key, certificate and sign-in are kept (files are 0600)
    /// [default: ~/.config/lanyard-agent].
    #[arg(long, global = true, env = "LANYARD_AGENT_STATE", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol this device with a code from ICT: makes the device key pair here
    /// (it never leaves this device) and gets its certificate from the broker.
    #[command(after_help = "Example:\n  lanyard-agent enroll lye1.AAAA...")]
    Enroll {
        /// The code, as one string (starts with `lye1.`).
        code: String,
    },
    /// Sign a person in on this device (password, and a TOTP code if they
    /// have one).
    #[command(
        after_help = "Examples:\n  lanyard-agent login j.smith\n  echo \"$PASSWORD\" | lanyard-agent login j.smith --password-stdin --totp 123456\n  lanyard-agent login --sso\n  lanyard-agent login --sso --no-browser\n  lanyard-agent login --device-code"
    )]
    Login {
        /// The person signing in (their staff username); not with --sso
        /// or --device-code.
        #[arg(
            required_unless_present_any = ["sso", "device_code"],
            conflicts_with_all = ["sso", "device_code"]
        )]
        username: Option<String>,
        /// Sign in with the organisation's identity provider in the browser
        /// (the broker's [oidc]); the provider redirects back to 127.0.0.1.
        #[arg(long, conflicts_with_all = ["password_stdin", "totp"])]
        sso: bool,
        /// With --sso: print the sign-in address instead of opening a browser.
        #[arg(long, requires = "sso")]
        no_browser: bool,
        /// Sign in with the organisation's identity provider on another
        /// device (RFC 8628 device code): open the address shown, enter
        /// the code, sign in there. Where the provider allows it.
        #[arg(long, conflicts_with_all = ["sso", "password_stdin", "totp"])]
        device_code: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The current code from the authenticator app.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// Connect and forward local ports to the apps you may use; keeps
    /// running and reconnects by itself. Prints one line
    /// `lanyard-agent up APP=127.0.0.1:PORT ... proxy=127.0.0.1:PORT
    /// pac=http://127.0.0.1:PORT/proxy.pac` whenever its forwards are ready.
    ///
    /// The local proxy (HTTP, HTTPS via CONNECT, and SOCKS5) reaches your
    /// apps by their usual names, e.g. http://hr.council.internal:8080/;
    /// point the browser's or the system's automatic proxy configuration
    /// at the PAC URL and only those names go through it.
    #[command(
        after_help = "Examples:\n  lanyard-agent up\n  lanyard-agent up --forward hr-system=127.0.0.1:8080\n  lanyard-agent up --proxy 127.0.0.1:8888\n  lanyard-agent up --no-proxy\n  curl --proxy http://127.0.0.1:3128 http://hr.council.internal:8080/"
    )]
    Up {
        /// Forward APP on a local address (repeatable). Without any, every app
        /// you may use gets a local port (the same one each time where free).
        #[arg(long, value_name = "APP=ADDR")]
        forward: Vec<Forward>,
        /// Where the local proxy listens (on this laptop only)
        /// [default: 127.0.0.1:3128, or the next free port].
        #[arg(
            long,
            env = "LANYARD_AGENT_PROXY",
            value_name = "ADDR",
            conflicts_with = "no_proxy"
        )]
        proxy: Option<std::net::SocketAddr>,
        /// Run no local proxy.
        #[arg(long)]
        no_proxy: bool,
    },
    /// Show whether this device is enrolled, who is signed in, and whether
    /// `up` is running.
    #[command(after_help = "Examples:\n  lanyard-agent status\n  lanyard-agent status --json")]
    Status {
        /// Print one JSON document instead of lines of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign out on this device: the broker ends the sign-in (a running `up`
    /// is disconnected and stops), then the tokens here are removed. If the
    /// broker cannot be reached the tokens are removed all the same, and
    /// the command says so and fails: ask ICT to end the sign-in
    /// (`lanyard sessions kill`).
    #[command(after_help = "Example:\n  lanyard-agent logout")]
    Logout,
    /// Print a shell completion script on standard output.
    #[command(
        after_help = "Examples:\n  lanyard-agent completions bash > ~/.local/share/bash-completion/completions/lanyard-agent\n  lanyard-agent completions zsh > \"${fpath[1]}/_lanyard-agent\"\n  lanyard-agent completions fish > ~/.config/fish/completions/lanyard-agent.fish"
    )]
    Completions {
        /// The shell: bash, zsh or fish.
        shell: shell_docs::Shell,
    },
    /// Write the man pages (one per command) into DIR; the packages ship them.
    #[command(hide = true, after_help = "Example:\n  lanyard-agent man target/man")]
    Man {
        /// The directory to write lanyard-agent.1, lanyard-agent-up.1, ... into.
        dir: PathBuf,
    },
}

/// Completions and man pages (shared with the other binaries).
#[path = "../../packaging/shell_docs.rs"]
mod shell_docs;

/// Exit status: enrol again (not enrolled, revoked, certificate expired).
const EXIT_ENROL_AGAIN: u8 = 3;
/// Exit status: sign in again (nobody signed in, or the sign-in was ended).
const EXIT_SIGN_IN_AGAIN: u8 = 4;
/// Exit status: refused by the broker until ICT changes something.
const EXIT_REFUSED: u8 = 5;

/// The exit status for an error: the distinct ones above tell a service
/// manager (the user unit's `RestartPreventExitStatus=`) that starting
/// again cannot help; 1 for everything else.
fn exit_status(e: &anyhow::Error) -> u8 {
    use lanyard_agent::identity::IdentityError;
    let identity = |i: &IdentityError| match i {
        IdentityError::NotEnrolled | IdentityError::Damaged { .. } => Some(EXIT_ENROL_AGAIN),
        IdentityError::NotSignedIn => Some(EXIT_SIGN_IN_AGAIN),
        _ => None,
    };
    let status = if let Some(exit) = e.downcast_ref::<Exit>() {
        Some(exit.status)
    } else if let Some(up) = e.downcast_ref::<up::UpError>() {
        match up {
            up::UpError::Revoked(_) => Some(EXIT_ENROL_AGAIN),
            up::UpError::SignedOut(_) => Some(EXIT_SIGN_IN_AGAIN),
            up::UpError::Refused(_) => Some(EXIT_REFUSED),
            up::UpError::Identity(i) => identity(i),
            up::UpError::Listen(_) => None,
        }
    } else {
        e.downcast_ref::<IdentityError>().and_then(identity)
    };
    status.unwrap_or(1)
}

/// An error whose exit status is known where it is made.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Exit {
    status: u8,
    message: String,
}

/// Writing to stdout failed; a closed one (`lanyard-agent status | head -1`)
/// ends the command quietly.
#[derive(Debug, thiserror::Error)]
#[error("cannot write output: {0}")]
struct OutputError(std::io::Error);

/// `println!` that hands a failed write back as an [`OutputError`].
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*).map_err(OutputError)?
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let script = shell_docs::completions(*shell, Cli::command());
            return match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("lanyard-agent: error: cannot write output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            };
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            return match shell_docs::man_pages(Cli::command(), dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "lanyard-agent: error: cannot write man pages to {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let format = match LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("lanyard-agent: error: {e}");
            return ExitCode::from(2);
        }
    };
    lanyard_agent::logging::init(format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lanyard-agent: error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<OutputError>()
                .is_some_and(|o| o.0.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", format.line(PROGRAM, "ERROR", &e.to_string()));
            ExitCode::from(exit_status(&e))
        }
    }
}

/// Reads a password: the first line of stdin, or a prompt without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")?
    } else {
        anyhow::bail!("no terminal to ask for the password on: use --password-stdin");
    };
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    Ok(password)
}

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

const PROGRAM: &str = "lanyard-agent";

/// A message from `up` on stderr, in the log format (checked at start).
fn tell(level: &str, message: String) {
    let format = LogFormat::from_env().unwrap_or(LogFormat::Text);
    eprintln!("{}", format.line(PROGRAM, level, &message));
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = match cli.state_dir {
        Some(d) => d,
        None => default_dir()?,
    };
    // What to type next, with the state dir when it is not the default.
    let next = |args: &str| {
        let custom = default_dir().ok().as_deref() != Some(dir.as_path());
        if custom {
            format!("lanyard-agent --state-dir {} {args}", dir.display())
        } else {
            format!("lanyard-agent {args}")
        }
    };
    match cli.command {
        Command::Enroll { code } => {
            let code = lanyard_proto::EnrolmentCode::decode(code.trim())?;
            let state = StateDir::open(&dir)?;
            let done = account::enrol(&state, &code).await?;
            say!(
                "enrolled with {}; certificate valid until {}",
                done.broker,
                when(done.cert_expires_at)
            );
            eprintln!("next: {}", next("login USERNAME"));
            Ok(())
        }
        Command::Login {
            username: None,
            device_code: true,
            ..
        } => {
            let state = StateDir::open(&dir)?;
            let device = state.device()?;
            let (endpoint, conn) = account::connect_for_sign_in(&state, &device).await?;
            let show = |p: &lanyard_agent::sso::DeviceCodePrompt| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "To sign in, open {} on any device", p.verification_uri);
                let _ = writeln!(out, "and enter the code: {}", p.user_code);
                if let Some(complete) = &p.verification_uri_complete {
                    let _ = writeln!(out, "(or open {complete}, which has the code in it)");
                }
                let _ = out.flush();
                eprintln!(
                    "waiting up to {} minutes for the sign-in...",
                    p.expires_in.as_secs().div_ceil(60)
                );
            };
            let signed = lanyard_agent::sso::device_sign_in(&state, &device, &conn, show).await;
            let tokens = account::after_sign_in(&state, endpoint, conn, signed).await?;
            say!("signed in as {}", tokens.username);
            eprintln!("next: {}", next("up"));
            Ok(())
        }
        Command::Login {
            username: None,
            no_browser,
            ..
        } => {
            let state = StateDir::open(&dir)?;
            let device = state.device()?;
            let (endpoint, conn) = account::connect_for_sign_in(&state, &device).await?;
            let show = |url: &str| {
                if no_browser || !lanyard_agent::sso::open_browser(url) {
                    eprintln!("Open this address in a browser to sign in:");
                } else {
                    eprintln!("Opened your browser to sign in; if it did not, open:");
                }
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{url}");
                let _ = out.flush();
            };
            let signed = lanyard_agent::sso::sign_in(&state, &device, &conn, show).await;
            let tokens = account::after_sign_in(&state, endpoint, conn, signed).await?;
            say!("signed in as {}", tokens.username);
            eprintln!("next: {}", next("up"));
            Ok(())
        }
        Command::Login {
            username: Some(username),
            password_stdin,
            totp,
            ..
        } => {
            let state = StateDir::open(&dir)?;
            let device = state.device()?;
            let password = read_password(password_stdin)?;
            let (endpoint, conn) = account::connect_for_sign_in(&state, &device).await?;
            let signed = account::sign_in(&state, &device, &conn, &username, password, totp).await;
            let tokens = account::after_sign_in(&state, endpoint, conn, signed).await?;
            say!("signed in as {}", tokens.username);
            eprintln!("next: {}", next("up"));
            Ok(())
        }
        Command::Up {
            forward,
            proxy,
            no_proxy,
        } => {
            let state = StateDir::open(&dir)?;
            let config = UpConfig {
                forwards: forward,
                proxy: match (proxy, no_proxy) {
                    (_, true) => up::ProxyAt::Off,
                    (Some(addr), false) => up::ProxyAt::At(addr),
                    (None, false) => up::ProxyAt::Default,
                },
                ..UpConfig::default()
            };
            let report = |event: UpEvent| match event {
                UpEvent::Ready {
                    forwards,
                    not_allowed,
                    proxy,
                    ..
                } => {
                    let mut line = String::from("lanyard-agent up");
                    for (app, addr) in &forwards {
                        line.push_str(&format!(" {app}={addr}"));
                    }
                    if let Some(addr) = proxy {
                        line.push_str(&format!(" proxy={addr} pac={}", up::pac_url(addr)));
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    if forwards.is_empty() {
                        tell(
                            "WARN",
                            "connected, but no app is open to you on this device".into(),
                        );
                    }
                    for app in not_allowed {
                        tell("WARN", format!("{app}: not allowed for you on this device"));
                    }
                }
                UpEvent::Disconnected { reason, retry_in } => tell(
                    "WARN",
                    format!(
                        "disconnected: {reason}; reconnecting in {}",
                        humantime::format_duration(std::time::Duration::from_millis(
                            retry_in.as_millis() as u64
                        ))
                    ),
                ),
                UpEvent::StreamFailed { app, reason } => tell("WARN", format!("{app}: {reason}")),
            };
            let shutdown = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async {
                        match term.as_mut() {
                            Some(t) => { t.recv().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => {}
                }
            };
            match up::run(state.clone(), config, report, shutdown).await {
                Err(e @ up::UpError::SignedOut(_)) => {
                    let who = state
                        .read(up::ENDED_FILE)
                        .ok()
                        .flatten()
                        .and_then(|b| serde_json::from_slice::<up::SignInEnded>(&b).ok())
                        .map_or_else(|| "USERNAME".to_owned(), |e| e.username);
                    Err(Exit {
                        status: EXIT_SIGN_IN_AGAIN,
                        message: format!(
                            "{e}; sign in again with `{}`, then `{}`",
                            next(&format!("login {who}")),
                            next("up")
                        ),
                    }
                    .into())
                }
                other => Ok(other?),
            }
        }
        Command::Status { json } => {
            let state = StateDir::open(&dir)?;
            let enrolment = state.enrolment()?;
            let tokens = state.tokens()?;
            let running: Option<UpStatus> = state
                .read(up::STATUS_FILE)?
                .and_then(|b| serde_json::from_slice::<UpStatus>(&b).ok())
                .filter(|s| pid_alive(s.pid));
            let ended: Option<up::SignInEnded> = state
                .read(up::ENDED_FILE)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .filter(|_| tokens.is_none());
            let now = now_secs();
            // `up`'s state in one word: not running, connecting (first
            // attempt), connected, or reconnecting (`last_error` says why).
            let up_state = match &running {
                None => "not running",
                Some(r) if r.connected => "connected",
                Some(r) if r.reconnects == 0 && r.last_error.is_none() => "connecting",
                Some(_) => "reconnecting",
            };
            if json {
                let value = serde_json::json!({
                    "state_dir": dir,
                    "enrolled": enrolment.is_some(),
                    "broker": enrolment.as_ref().map(|e| &e.broker),
                    "certificate_expires_at": enrolment.as_ref().map(|e| when(e.cert_expires_at)),
                    "signed_in": tokens.is_some(),
                    "username": tokens.as_ref().map(|t| &t.username),
                    "up": running.is_some(),
                    "state": up_state,
                    "connected": running.as_ref().is_some_and(|r| r.connected),
                    "session_id": running.as_ref().and_then(|r| r.session_id.clone()),
                    "forwards": running.as_ref().map(|r| r.forwards.clone()).unwrap_or_default(),
                    "proxy": running.as_ref().and_then(|r| r.proxy.clone()),
                    "pac": running.as_ref().and_then(|r| r.pac.clone()),
                    "last_error": running.as_ref().and_then(|r| r.last_error.clone()),
                    "sign_in_ended": ended.as_ref().map(|e| serde_json::json!({
                        "username": e.username,
                        "reason": e.reason,
                        "at": when(e.at),
                    })),
                });
                say!("{value}");
                return Ok(());
            }
            say!("state dir    {}", dir.display());
            match &enrolment {
                Some(e) => {
                    say!("enrolled     yes, with {}", e.broker);
                    let note = if now >= e.cert_expires_at {
                        " (expired: enrol again)"
                    } else {
                        ""
                    };
                    say!("certificate  valid until {}{note}", when(e.cert_expires_at));
                }
                None => say!("enrolled     no ({})", next("enroll CODE")),
            }
            match (&tokens, &ended) {
                (Some(t), _) => say!("signed in    {}", t.username),
                (None, Some(e)) => say!(
                    "signed in    no: the broker ended {}'s sign-in at {} ({}); run `{}`",
                    e.username,
                    when(e.at),
                    e.reason,
                    next(&format!("login {}", e.username))
                ),
                (None, None) => say!("signed in    no ({})", next("login USERNAME")),
            }
            match &running {
                Some(r) if r.connected => {
                    say!(
                        "up           connected, session {}",
                        r.session_id.as_deref().unwrap_or("?")
                    );
                    for (app, addr) in &r.forwards {
                        say!("  {app:<20} {addr}");
                    }
                    if let (Some(proxy), Some(pac)) = (&r.proxy, &r.pac) {
                        say!("proxy        {proxy} (PAC file {pac})");
                    }
                }
                Some(r) => say!(
                    "up           reconnecting ({})",
                    r.last_error.as_deref().unwrap_or("starting")
                ),
                None => say!("up           not running"),
            }
            Ok(())
        }
        Command::Completions { .. } | Command::Man { .. } => unreachable!("handled in main"),
        Command::Logout => {
            let state = StateDir::open(&dir)?;
            let Some(tokens) = state.tokens()? else {
                state.remove(TOKENS_FILE)?;
                say!("nobody was signed in on this device");
                return Ok(());
            };
            // The broker first, so that the sign-in ends everywhere, not
            // only here.
            let at_broker = async {
                let device = state.device()?;
                let (endpoint, conn) = account::connect(&device).await?;
                let ended = account::sign_out(&conn, &tokens).await;
                conn.close(0u32.into(), b"signed out");
                endpoint.wait_idle().await;
                Ok::<(), anyhow::Error>(ended?)
            };
            let at_broker: anyhow::Result<()> =
                tokio::time::timeout(std::time::Duration::from_secs(15), at_broker)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 15 s")));
            state.remove(TOKENS_FILE)?;
            match at_broker {
                Ok(()) => {
                    say!(
                        "signed out {} on this device and at the broker",
                        tokens.username
                    );
                    Ok(())
                }
                Err(e) => {
                    say!("signed out {} on this device", tokens.username);
                    anyhow::bail!(
                        "the broker was not told ({e}); the sign-in ends there when its tokens \
                         expire, or ask ICT to end it now (`lanyard sessions kill`)"
                    )
                }
            }
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
}
