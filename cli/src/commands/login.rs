//! `lanyard login USERNAME`

use clap::Args;
use serde::Deserialize;
use serde_json::json;

use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The staff member signing in.
    pub username: String,
    /// Read the password from stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// The current code from the person's authenticator app, if they use TOTP.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct LoginResponse {
    token: String,
    username: String,
    admin: bool,
    expires_at: String,
}

pub async fn run(cli: &Cli, args: &LoginArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(false)?;
    let password = super::read_secret("Password: ", args.password_stdin)?;
    let resp: LoginResponse = client
        .post(
            "/api/v1/login",
            &json!({ "username": args.username, "password": password, "totp": args.totp }),
        )
        .await?;
    if out.json {
        return Ok(out.json(&resp)?);
    }
    out.line(&resp.token)?;
    eprintln!(
        "signed in as {}{} until {}; use it with --token or LANYARD_TOKEN",
        resp.username,
        if resp.admin { " (admin)" } else { "" },
        resp.expires_at
    );
    Ok(())
}
