//! One module per command group.

pub mod apps;
pub mod audit;
pub mod devices;
pub mod enroll_code;
pub mod groups;
pub mod load;
pub mod login;
pub mod nodes;
pub mod report;
pub mod requests;
pub mod sessions;
pub mod staff;
pub mod stress;
pub mod tokens;

use clap::Subcommand;

use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in with a staff member's password, or with the organisation's
    /// identity provider (--sso), and print an API token.
    ///
    /// The first sign-in by a person with admin rights expires the
    /// bootstrap token (the data dir's `admin-token`): it is for setting up.
    #[command(after_help = "Examples:
  lanyard login a.patel
  echo \"$PASSWORD\" | lanyard login a.patel --password-stdin --totp 123456
  lanyard login --sso
  lanyard login --sso --no-browser")]
    Login(login::LoginArgs),
    /// API tokens: list them, revoke one.
    ///
    /// The bootstrap token (the data dir's `admin-token`) is one of them: it
    /// works until a person with admin rights first signs in with a
    /// password (`lanyard login`), then it is expired; revoke it sooner if
    /// you like.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard tokens list --user j.smith
  lanyard tokens revoke 5d1e0c7b2a9f4e3d8c6b1a0f9e8d7c6b"
    )]
    Tokens(tokens::TokensCommand),
    /// Access groups: what apps grant access to.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard groups add hr --description \"Human resources\"
  lanyard groups list
  lanyard groups remove hr"
    )]
    Groups(groups::GroupsCommand),
    /// Staff: people who sign in, their priority tier and groups.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard staff add j.smith --name \"Jo Smith\" --priority 1 --group hr
  lanyard staff import staff.csv
  lanyard staff list"
    )]
    Staff(staff::StaffCommand),
    /// Internal apps reachable through tunnels, and who may reach them.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard apps add hr-system --target hr.internal:443 --allow-group hr --device-kind managed
  lanyard apps list
  lanyard apps remove hr-system"
    )]
    Apps(apps::AppsCommand),
    /// Single-use codes that enrol a laptop or a personal device.
    #[command(
        subcommand,
        name = "enroll-code",
        after_help = "Examples:
  lanyard enroll-code create --device LT-00421
  lanyard enroll-code create --personal j.smith --ttl 2h
  lanyard enroll-code list --open
  lanyard enroll-code cancel 8f3c2a1e9b7d4c6f0a1b2c3d4e5f6a7b"
    )]
    EnrollCode(enroll_code::EnrollCodeCommand),
    /// Council laptops (stock, allocation, returns, losses) and personal devices.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard devices add LT-00421 --serial PF3ABC12 --model \"ThinkPad T14\"
  lanyard devices list --status in-stock
  lanyard devices assign LT-00421 --to j.smith
  lanyard devices return LT-00421 --status in-repair --note \"cracked screen\""
    )]
    Devices(devices::DevicesCommand),
    /// The laptop request queue, served priority 1 first.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard requests add k.lee --reason \"contact centre, taking calls from home\"
  lanyard requests list --open
  lanyard requests fulfil"
    )]
    Requests(requests::RequestsCommand),
    /// Live load on the broker node: agents, streams, rates per second,
    /// capacity used, denials and today's peak.
    #[command(after_help = "Examples:
  lanyard load
  lanyard load --json")]
    Load,
    /// A capacity test: N simulated agents enrol, sign in, connect over QUIC
    /// and push checked bytes through tunnels; prints a summary.
    #[command(after_help = "Examples:
  lanyard stress --agents 50
  lanyard stress --agents 500 --ramp 20s --duration 60s --streams-per-agent 4 \\
      --bytes-per-stream 65536 --report run.html --json-out run.json")]
    Stress(stress::StressArgs),
    /// Live agent sessions: list them, end one.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard sessions list
  lanyard sessions list --node broker-b
  lanyard sessions kill 3f2a9c..."
    )]
    Sessions(sessions::SessionsCommand),
    /// Broker nodes sharing one PostgreSQL: address, heartbeat, agents.
    #[command(
        subcommand,
        after_help = "Example:
  lanyard nodes list"
    )]
    Nodes(nodes::NodesCommand),
    /// Reports: the inventory as CSV or JSON.
    #[command(
        subcommand,
        after_help = "Example:
  lanyard report inventory --format csv > inventory.csv"
    )]
    Report(report::ReportCommand),
    /// The tamper-evident audit log.
    #[command(
        subcommand,
        after_help = "Examples:
  lanyard audit list --limit 20
  lanyard audit verify"
    )]
    Audit(audit::AuditCommand),
    /// Print a shell completion script on standard output (with --json, an
    /// object holding it).
    #[command(after_help = "Examples:
  lanyard completions bash > /etc/bash_completion.d/lanyard
  lanyard completions zsh > \"${fpath[1]}/_lanyard\"
  lanyard completions fish > ~/.config/fish/completions/lanyard.fish")]
    Completions {
        /// The shell: bash, zsh or fish.
        shell: shell_docs::Shell,
    },
    /// Write the man pages (one per command) into DIR; the packages ship them.
    #[command(
        hide = true,
        after_help = "Example:
  lanyard man target/man"
    )]
    Man {
        /// The directory to write lanyard.1, lanyard-staff-add.1, ... into.
        dir: std::path::PathBuf,
    },
}

/// Completions and man pages (shared with the other binaries).
#[path = "../../../packaging/shell_docs.rs"]
pub mod shell_docs;

pub async fn run(cli: &Cli, out: &mut Out<'_>) -> Result<(), CliError> {
    match &cli.command {
        Command::Login(args) => login::run(cli, args, out).await,
        Command::Groups(c) => groups::run(cli, c, out).await,
        Command::Staff(c) => staff::run(cli, c, out).await,
        Command::Apps(c) => apps::run(cli, c, out).await,
        Command::EnrollCode(c) => enroll_code::run(cli, c, out).await,
        Command::Devices(c) => devices::run(cli, c, out).await,
        Command::Requests(c) => requests::run(cli, c, out).await,
        Command::Sessions(c) => sessions::run(cli, c, out).await,
        Command::Nodes(c) => nodes::run(cli, c, out).await,
        Command::Tokens(c) => tokens::run(cli, c, out).await,
        Command::Load => load::run(cli, out).await,
        Command::Stress(args) => stress::run(cli, args, out).await,
        Command::Report(c) => report::run(cli, c, out).await,
        Command::Audit(c) => audit::run(cli, c, out).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let script = shell_docs::completions(*shell, Cli::command());
            if out.json {
                let shell = format!("{shell:?}").to_lowercase();
                let script = String::from_utf8_lossy(&script);
                return Ok(out.json(&serde_json::json!({ "shell": shell, "script": script }))?);
            }
            Ok(out.w.write_all(&script)?)
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            let pages = shell_docs::man_pages(Cli::command(), dir).map_err(|e| {
                CliError::Failed(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
            if out.json {
                return Ok(out.json(&serde_json::json!({ "pages": pages }))?);
            }
            Ok(out.line(format!(
                "wrote {} man pages to {}",
                pages.len(),
                dir.display()
            ))?)
        }
    }
}

/// Reads a secret from stdin (one line), or prompts without echo on a terminal.
pub fn read_secret(prompt: &str, from_stdin: bool) -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    let secret = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt)?
    };
    if secret.is_empty() {
        return Err(CliError::Usage("no password given on stdin".into()));
    }
    Ok(secret)
}

/// Priority tier 1-3, checked by clap so a bad value is a usage error.
pub fn parse_priority(s: &str) -> Result<u8, String> {
    match s {
        "1" | "2" | "3" => Ok(s.parse().unwrap_or(3)),
        _ => Err(format!(
            "{s:?} is not a priority: use 1 (most urgent), 2 or 3"
        )),
    }
}
