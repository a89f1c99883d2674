//! `lanyard groups add/list/set/remove`

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
  lanyard groups add hr --idp-group 6f1c0f3e-2a49-4a8b-9d7e-1f2a3b4c5d6e --idp-group HR-Staff
  lanyard groups add ict-admins --idp-group Lanyard-Admins --grants-role admin")]
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
        /// The role the provider's members of this group are given at SSO
        /// sign-in (admin, ict or viewer), when higher than their own; it
        /// is taken away again when the provider no longer grants it.
        #[arg(long, value_name = "ROLE", requires = "idp_groups")]
        grants_role: Option<String>,
    },
    /// Change which provider groups make people members of a group, and
    /// the role it grants. People follow at their next SSO sign-in or
    /// re-check.
    #[command(after_help = "Examples:
  lanyard groups set hr --idp-group HR-Staff --idp-group HR-Managers
  lanyard groups set hr --no-idp-groups
  lanyard groups set ict-admins --grants-role ict
  lanyard groups set ict-admins --grants-role none")]
    Set {
        /// The group to change.
        name: String,
        /// The provider groups (replacing the list there is). Repeatable.
        #[arg(
            long = "idp-group",
            value_name = "VALUE",
            conflicts_with = "no_idp_groups"
        )]
        idp_groups: Vec<String>,
        /// Map no provider group to this group any more (its members are
        /// then managed by hand).
        #[arg(long)]
        no_idp_groups: bool,
        /// The role granted: admin, ict, viewer, or none.
        #[arg(long, value_name = "ROLE")]
        grants_role: Option<String>,
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
    #[serde(default)]
    grants_role: Option<String>,
}

/// What `groups add` and `groups set` say about a group's mappings.
fn mapping_text(g: &Group) -> String {
    match (&g.idp_groups[..], &g.grants_role) {
        ([], _) => "no identity provider group".to_owned(),
        (list, None) => format!("from the identity provider's {}", list.join(", ")),
        (list, Some(role)) => format!(
            "from the identity provider's {}, granting {role}",
            list.join(", ")
        ),
    }
}

pub async fn run(cli: &Cli, cmd: &GroupsCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        GroupsCommand::Add {
            name,
            description,
            idp_groups,
            grants_role,
        } => {
            let mut body =
                json!({ "name": name, "description": description, "idp_groups": idp_groups });
            if let Some(r) = grants_role {
                body["grants_role"] = json!(r);
            }
            let g: Group = client.post("/api/v1/groups", &body).await?;
            if out.json {
                return Ok(out.json(&g)?);
            }
            if g.idp_groups.is_empty() {
                out.line(format!("added group {}", g.name))?;
            } else {
                out.line(format!("added group {} ({})", g.name, mapping_text(&g)))?;
            }
        }
        GroupsCommand::Set {
            name,
            idp_groups,
            no_idp_groups,
            grants_role,
        } => {
            let mut body = serde_json::Map::new();
            if *no_idp_groups || !idp_groups.is_empty() {
                body.insert("idp_groups".into(), json!(idp_groups));
            }
            if let Some(r) = grants_role {
                body.insert("grants_role".into(), json!(r));
            }
            if body.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: give --idp-group, --no-idp-groups or --grants-role".into(),
                ));
            }
            let g: Group = client
                .call(
                    http::Method::PATCH,
                    &format!("/api/v1/groups/{}", encode(name)),
                    Some((
                        "application/json",
                        serde_json::to_vec(&serde_json::Value::Object(body))
                            .map_err(|e| CliError::Failed(e.to_string()))?,
                    )),
                )
                .await?;
            if out.json {
                return Ok(out.json(&g)?);
            }
            out.line(format!("group {}: {}", g.name, mapping_text(&g)))?;
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
