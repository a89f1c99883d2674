//! `lanyard`: the admin command line, a thin client of the broker's API.
//!
//! The binary is a few lines over [`run`], which tests call too.

#![forbid(unsafe_code)]

pub mod client;
pub mod commands;
pub mod output;

use std::path::{Path, PathBuf};

use clap::Parser;

pub use client::{Client, ClientError};
pub use commands::Command;
use output::Out;

/// Lanyard's admin command line: staff, apps, enrolment codes, laptops,
/// audit.
///
/// It talks to the broker's HTTPS API. Run from the directory where the
/// broker keeps `lanyard-data/`, it finds the broker's CA certificate and
/// bootstrap admin token there by itself; elsewhere pass --ca-cert and
/// --token (or set LANYARD_CA_CERT and LANYARD_TOKEN).
#[derive(Debug, Parser)]
#[command(
    name = "lanyard",
    version,
    max_term_width = 100,
    after_help = "Examples:
  lanyard groups add hr
  lanyard staff add j.smith --name \"Jo Smith\" --priority 1 --group hr
  lanyard apps add hr-system --target hr.internal:443 --allow-group hr
  lanyard enroll-code create --personal j.smith
  lanyard --broker https://broker.council.example:8443 --ca-cert ca.pem staff list"
)]
pub struct Cli {
    /// The broker's API address.
    #[arg(
        long,
        global = true,
        env = "LANYARD_BROKER",
        value_name = "URL",
        default_value = "https://127.0.0.1:8443",
        value_parser = client::parse_broker
    )]
    pub broker: String,
    /// API token (the broker's DATA_DIR/admin-token, or one from `lanyard login`);
    /// an empty one counts as not given.
    #[arg(
        long,
        global = true,
        env = "LANYARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Read the API token from this file [default: ./lanyard-data/admin-token if present].
    #[arg(long, global = true, env = "LANYARD_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The broker's CA certificate [default: ./lanyard-data/ca.pem if present].
    #[arg(long, global = true, env = "LANYARD_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

const DEFAULT_DATA_DIR: &str = "lanyard-data";

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    /// Stopped by Ctrl-C (SIGINT); exits 130.
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The exit status: 2 for a usage mistake, 130 after Ctrl-C, else 1.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Interrupted => 130,
            _ => 1,
        }
    }

    /// The error as `--json` prints it (on stderr), in the shape of the
    /// API's own errors: `{"error": {"code", "message", "status", "rows"}}`.
    /// `status` is the HTTP status when the broker answered, else null;
    /// `rows` (a CSV import's bad lines) only when there are any.
    pub fn to_json(&self) -> serde_json::Value {
        let (code, status, rows) = match self {
            CliError::Client(ClientError::Api {
                status, code, rows, ..
            }) => (code.as_str(), Some(status.as_u16()), rows.as_slice()),
            CliError::Client(ClientError::Setup(_)) | CliError::Usage(_) => {
                ("usage", None, &[][..])
            }
            CliError::Client(ClientError::Connect { .. }) => ("unreachable", None, &[][..]),
            CliError::Client(ClientError::Tls { .. }) => ("tls", None, &[][..]),
            CliError::Client(ClientError::Timeout) => ("timeout", None, &[][..]),
            CliError::Client(ClientError::Protocol(_)) => ("protocol", None, &[][..]),
            CliError::Failed(_) => ("failed", None, &[][..]),
            CliError::Interrupted => ("interrupted", None, &[][..]),
            CliError::Io(_) => ("io", None, &[][..]),
        };
        let mut error = serde_json::json!({
            "code": code,
            "message": self.to_string(),
            "status": status,
        });
        if !rows.is_empty() {
            error["rows"] = rows
                .iter()
                .map(|r| serde_json::json!({ "line": r.line, "problem": r.problem }))
                .collect();
        }
        serde_json::json!({ "error": error })
    }
}

/// A command line clap refused (unknown flag, missing argument), as
/// `--json` prints it: `{"error": {"code": "usage", "message", "status": null}}`.
pub fn usage_error_json(e: &clap::Error) -> serde_json::Value {
    // The lines before the usage and tip that follow the first blank line.
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned();
    serde_json::json!({ "error": { "code": "usage", "message": message, "status": null } })
}

impl Cli {
    fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
        std::fs::read(path)
            .map_err(|e| CliError::Usage(format!("cannot read {what} {}: {e}", path.display())))
    }

    /// The token: --token (LANYARD_TOKEN), else --token-file, else the
    /// data dir's admin-token. An empty value (`LANYARD_TOKEN=`) counts as
    /// not given, as an unset variable does.
    fn token(&self) -> Result<Option<String>, CliError> {
        if let Some(t) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(t.to_owned()));
        }
        let file = match nonempty_path(&self.token_file) {
            Some(f) => Some(f.to_owned()),
            None => Some(Path::new(DEFAULT_DATA_DIR).join("admin-token")).filter(|p| p.exists()),
        };
        match file {
            Some(f) => {
                let text = Self::read_file(&f, "--token-file")?;
                let token = String::from_utf8_lossy(&text).trim().to_owned();
                if token.is_empty() {
                    return Err(CliError::Usage(format!(
                        "the token file {} is empty",
                        f.display()
                    )));
                }
                Ok(Some(token))
            }
            None => Ok(None),
        }
    }

    /// An API client from the global flags.
    pub fn client(&self, needs_token: bool) -> Result<Client, CliError> {
        let ca_path = match nonempty_path(&self.ca_cert) {
            Some(p) => p.to_owned(),
            None => {
                let p = Path::new(DEFAULT_DATA_DIR).join("ca.pem");
                if !p.exists() {
                    return Err(CliError::Usage(
                        "no CA certificate: pass --ca-cert (the broker's DATA_DIR/ca.pem) or set LANYARD_CA_CERT".into(),
                    ));
                }
                p
            }
        };
        let ca = Self::read_file(&ca_path, "--ca-cert")?;
        let token = self.token()?;
        if needs_token && token.is_none() {
            return Err(CliError::Usage(
                "no API token: pass --token, set LANYARD_TOKEN, or use --token-file DATA_DIR/admin-token".into(),
            ));
        }
        Ok(Client::new(&self.broker, &ca, token)?)
    }
}

/// A path flag, with an empty value (`LANYARD_CA_CERT=`) as not given.
fn nonempty_path(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// Runs one command, writing its output to `w`.
pub async fn run(cli: Cli, w: &mut dyn std::io::Write) -> Result<(), CliError> {
    let mut out = Out { json: cli.json, w };
    commands::run(&cli, &mut out).await
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
