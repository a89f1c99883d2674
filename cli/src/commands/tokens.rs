//! `lanyard tokens list/revoke`

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List API tokens, newest first: the bootstrap token and those made by
    /// `lanyard login`, with their state (active, expired, revoked, or
    /// disabled with their owner). Tokens themselves are never shown.
    #[command(after_help = "Examples:
  lanyard tokens list
  lanyard tokens list --user j.smith --json")]
    List {
        /// Only this staff member's tokens.
        #[arg(long, value_name = "USERNAME")]
        user: Option<String>,
    },
    /// Revoke an API token: the next request that carries it is refused.
    /// Audited. The bootstrap token can be revoked too (it also expires by
    /// itself once an admin signs in with `lanyard login`).
    #[command(after_help = "Example:
  lanyard tokens revoke 5d1e0c7b2a9f4e3d8c6b1a0f9e8d7c6b")]
    Revoke {
        /// The token's id, from `lanyard tokens list`.
        token_id: String,
    },
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("-").to_owned()
}

pub async fn run(cli: &Cli, cmd: &TokensCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        TokensCommand::List { user } => {
            let path = match user {
                Some(u) => format!("/api/v1/tokens?user={}", encode(u)),
                None => "/api/v1/tokens".to_owned(),
            };
            let tokens: Vec<Value> = client.get(&path).await?;
            if out.json {
                return Ok(out.json(&tokens)?);
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    ["id", "user", "label", "state", "created_at", "expires_at"]
                        .iter()
                        .map(|k| s(t, k))
                        .collect()
                })
                .collect::<Vec<_>>();
            out.table(
                &["ID", "USER", "LABEL", "STATE", "CREATED", "EXPIRES"],
                &rows,
            )?;
        }
        TokensCommand::Revoke { token_id } => {
            let t: Value = client
                .post(
                    &format!("/api/v1/tokens/{}/revoke", encode(token_id)),
                    &json!({}),
                )
                .await?;
            if out.json {
                return Ok(out.json(&t)?);
            }
            let owner = t["user"].as_str().unwrap_or("bootstrap");
            out.line(format!("revoked API token {} of {owner}", s(&t, "id")))?;
        }
    }
    Ok(())
}
