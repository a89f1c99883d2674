//! `lanyard`: see `lanyard --help`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use lanyard_cli::output::terminal_safe;
use lanyard_cli::{Cli, CliError, ClientError};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage mistake under --json is one JSON object on stderr, exit 2;
        // --help and --version print as usual.
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            eprintln!("{}", lanyard_cli::usage_error_json(&e));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let json = cli.json;
    match lanyard_agent::logging::LogFormat::from_env() {
        Ok(format) => lanyard_agent::logging::init(format),
        Err(e) => {
            eprintln!("lanyard: error: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lanyard: error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(lanyard_cli::run(cli, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever reads the output stopped (`lanyard audit list | head`):
        // nothing is wrong, and there is no one to tell.
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) if json => {
            // Exact text (JSON escapes what a terminal must not see).
            eprintln!("{}", e.to_json());
            ExitCode::from(e.exit_status())
        }
        Err(e) => {
            // The broker's message may quote text from outside (a name, a
            // CSV cell): shown escaped, as all text for people is.
            eprintln!("lanyard: error: {}", terminal_safe(&e.to_string()));
            if let CliError::Client(ClientError::Api { rows, .. }) = &e {
                for r in rows {
                    eprintln!("  line {}: {}", r.line, terminal_safe(&r.problem));
                }
            }
            ExitCode::from(e.exit_status())
        }
    }
}
