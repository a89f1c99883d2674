//! `lanyard-agent`: see `lanyard-agent --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lanyard_agent::state::{default_dir, StateDir};

/// Lanyard agent: reach the council's internal apps from home.
///
/// Enrol this laptop once with the code ICT gives you, sign in, then run
/// `lanyard-agent up` and use the local addresses it prints.
#[derive(Debug, Parser)]
#[command(name = "lanyard-agent", version, max_term_width = 100)]
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
    /// and gets its certificate from the broker.
    Enroll {
        /// The code, as one string (starts with `lye1.`).
        code: String,
    },
    /// Show whether this device is enrolled and signed in.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard-agent: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = match cli.state_dir {
        Some(d) => d,
        None => default_dir()?,
    };
    match cli.command {
        Command::Enroll { code } => {
            let code = lanyard_proto::EnrolmentCode::decode(&code)?;
            anyhow::bail!(
                "this agent build cannot enrol yet: the broker at {} speaks the enrolment protocol from the next release",
                code.broker_addr
            )
        }
        Command::Status { json } => {
            let state = StateDir::open(&dir)?;
            let enrolled = state.read("device.pem")?.is_some();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "state_dir": dir, "enrolled": enrolled, "signed_in": false })
                );
            } else {
                println!("state dir  {}", dir.display());
                println!("enrolled   {}", if enrolled { "yes" } else { "no" });
            }
            Ok(())
        }
    }
}
