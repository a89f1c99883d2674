//! `lanyard login USERNAME`, `lanyard login --sso`

use clap::Args;
use serde::Deserialize;
use serde_json::json;

use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The staff member signing in; not with --sso.
    #[arg(required_unless_present = "sso", conflicts_with = "sso")]
    pub username: Option<String>,
    /// Read the password from stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// The current code from the person's authenticator app, if they use TOTP.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
    /// Sign in with the organisation's identity provider in the browser
    /// (the broker's [oidc]); the provider redirects back to 127.0.0.1.
    #[arg(long, conflicts_with_all = ["password_stdin", "totp"])]
    pub sso: bool,
    /// With --sso: print the sign-in address instead of opening a browser.
    #[arg(long, requires = "sso")]
    pub no_browser: bool,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct LoginResponse {
    token: String,
    username: String,
    admin: bool,
    expires_at: String,
}

#[derive(Debug, Deserialize)]
struct SsoStart {
    url: String,
    ports: Vec<u16>,
    handle: String,
}

async fn sso(cli: &Cli, no_browser: bool) -> Result<LoginResponse, CliError> {
    use lanyard_agent::sso;
    let client = cli.client(false)?;
    let first: SsoStart = client
        .post("/api/v1/login/sso/start", &json!({ "port": 0 }))
        .await?;
    let (listener, port) = sso::listen_first_free(&first.ports)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let start: SsoStart = client
        .post("/api/v1/login/sso/start", &json!({ "port": port }))
        .await?;
    if no_browser || !sso::open_browser(&start.url) {
        eprintln!("Open this address in a browser to sign in:");
    } else {
        eprintln!("Opened your browser to sign in; if it did not, open:");
    }
    eprintln!("{}", start.url);
    let (code, state, reply) = sso::wait_for_code(listener)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let done: Result<LoginResponse, _> = client
        .post(
            "/api/v1/login/sso/finish",
            &json!({ "handle": start.handle, "code": code, "state": state }),
        )
        .await;
    match &done {
        Ok(r) => {
            reply
                .say(&format!(
                    "Signed in to Lanyard as {}. You can close this tab.",
                    r.username
                ))
                .await
        }
        Err(e) => reply.say(&format!("Sign-in refused: {e}")).await,
    }
    Ok(done?)
}

pub async fn run(cli: &Cli, args: &LoginArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let resp = match &args.username {
        None => sso(cli, args.no_browser).await?,
        Some(username) => {
            let client = cli.client(false)?;
            let password = super::read_secret("Password: ", args.password_stdin)?;
            client
                .post(
                    "/api/v1/login",
                    &json!({ "username": username, "password": password, "totp": args.totp }),
                )
                .await?
        }
    };
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
