//! `lanyard report inventory`

use clap::{Subcommand, ValueEnum};
use http::Method;

use crate::client::api_error;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Every council laptop with its status and holder, for a spreadsheet
    /// (CSV) or a script (JSON, with totals by status). In the CSV a cell
    /// that a spreadsheet would take for a formula (starting with =, +, -,
    /// @, a tab or a carriage return) starts with ' so it shows as text; the
    /// JSON is exact.
    #[command(after_help = "Examples:
  lanyard report inventory --format csv > inventory.csv
  lanyard report inventory --format json")]
    Inventory {
        /// CSV for a spreadsheet, or JSON (as --json gives).
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
}

pub async fn run(cli: &Cli, cmd: &ReportCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    let ReportCommand::Inventory { format } = cmd;
    let format = if out.json { Format::Json } else { *format };
    let fmt = match format {
        Format::Csv => "csv",
        Format::Json => "json",
    };
    let (status, body) = client
        .send(
            Method::GET,
            &format!("/api/v1/reports/inventory?format={fmt}"),
            None,
        )
        .await?;
    if !status.is_success() {
        return Err(api_error(status, &body).into());
    }
    out.w.write_all(&body)?;
    Ok(())
}
