//! `lanyard groups add/list/remove`

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::encode;
use crate::output::Out;
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Create a group.
    #[command(after_help = "Examples:
  lanyard groups add contact-centre
  lanyard groups add hr --description \"Human resources\"
  lanyard groups add hr --idp-group 6f1c0f3e-2a49-4a8b-9d7e-1f2a3b4c5d6e --idp-group HR-Staff")]
    Add {
        /// The group's name: a-z, 0-9, '.', '-' or '_'.
        name: String,
        /// What the group is for [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        description: String,
        /// A group at the organisation's identity provider, as it sends it
        /// in the groups claim (Entra ID: the group's object id, unless
        /// configured to send names); its members become members of this
        /// group at every SSO sign-in. Repeatable.
        #[arg(long = "idp-group", value_name = "VALUE")]
        idp_groups: Vec<String>,
    },
    /// List groups with how many staff and apps use each.
    #[command(after_help = "Examples:
  lanyard groups list
  lanyard groups list --json")]
    List,
    /// Remove a group that no staff member or app uses.
    #[command(after_help = "Example:
  lanyard groups remove contact-centre")]
    Remove {
        /// The group to remove.
        name: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Group {
    name: String,
    description: String,
    members: i64,
    apps: i64,
    #[serde(default)]
    idp_groups: Vec<String>,
}

pub async fn run(cli: &Cli, cmd: &GroupsCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        GroupsCommand::Add {
            name,
            description,
            idp_groups,
        } => {
            let g: Group = client
                .post(
                    "/api/v1/groups",
                    &json!({ "name": name, "description": description, "idp_groups": idp_groups }),
                )
                .await?;
            if out.json {
                return Ok(out.json(&g)?);
            }
            if g.idp_groups.is_empty() {
                out.line(format!("added group {}", g.name))?;
            } else {
                out.line(format!(
                    "added group {} (from the identity provider's {})",
                    g.name,
                    g.idp_groups.join(", ")
                ))?;
            }
        }
        GroupsCommand::List => {
            let groups: Vec<Group> = client.get("/api/v1/groups").await?;
            if out.json {
                return Ok(out.json(&groups)?);
            }
            let rows = groups
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.members.to_string(),
                        g.apps.to_string(),
                        g.description.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(&["GROUP", "STAFF", "APPS", "DESCRIPTION"], &rows)?;
        }
        GroupsCommand::Remove { name } => {
            client
                .delete(&format!("/api/v1/groups/{}", encode(name)))
                .await?;
            out.done(
                json!({ "group": name, "removed": true }),
                format!("removed group {name}"),
            )?;
        }
    }
    Ok(())
}
