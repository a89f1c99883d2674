//! `lanyard staff ...`

use std::path::PathBuf;

use clap::Subcommand;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::encode;
use crate::output::{join, yes_no, Out};
use crate::{Cli, CliError};

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Add a staff member.
    #[command(after_help = "Examples:
  lanyard staff add j.smith --name \"Jo Smith\" --department Revenues --priority 1 --group hr
  echo \"$PASSWORD\" | lanyard staff add a.patel --name \"Asha Patel\" --group hr --password-stdin")]
    Add {
        /// Login name: lowercase letters, digits, '.', '-', '_'.
        username: String,
        /// Full name.
        #[arg(long)]
        name: String,
        /// Email address [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        email: String,
        /// Department, e.g. Revenues [default: none].
        #[arg(long, default_value = "", hide_default_value = true)]
        department: String,
        /// 1 = must keep working whatever happens (served first), 3 = least urgent.
        #[arg(long, default_value = "3", value_parser = super::parse_priority)]
        priority: u8,
        /// An access group (repeatable); the group must exist.
        #[arg(long = "group", value_name = "G")]
        groups: Vec<String>,
        /// What they may do: admin (everything), ict (laptops, requests,
        /// enrolment codes, sessions), viewer (read the dashboard and
        /// lists), staff (only their own page).
        #[arg(long, default_value = "staff", value_parser = ["admin", "ict", "viewer", "staff"])]
        role: String,
        /// The same as --role admin.
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// Read an initial password from stdin (at least 10 characters).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a staff member's details, priority, role or groups; what is
    /// not given stays as it is. Changing someone's role or groups holds
    /// for their tunnels at once.
    #[command(after_help = "Examples:
  lanyard staff set j.smith --priority 1
  lanyard staff set a.patel --role ict
  lanyard staff set k.lee --group hr --group contact-centre
  lanyard staff set k.lee --no-groups")]
    Set {
        /// The staff member's username.
        username: String,
        /// Full name.
        #[arg(long)]
        name: Option<String>,
        /// Email address ('' for none).
        #[arg(long)]
        email: Option<String>,
        /// Department.
        #[arg(long)]
        department: Option<String>,
        /// 1 = must keep working whatever happens (served first), 3 = least urgent.
        #[arg(long, value_parser = super::parse_priority)]
        priority: Option<u8>,
        /// admin, ict, viewer or staff (not your own).
        #[arg(long, value_parser = ["admin", "ict", "viewer", "staff"])]
        role: Option<String>,
        /// Their access groups from now on, replacing the ones they have
        /// (repeatable); each must exist.
        #[arg(long = "group", value_name = "G", conflicts_with = "no_groups")]
        groups: Vec<String>,
        /// Take them out of every group.
        #[arg(long)]
        no_groups: bool,
    },
    /// A leaver, in one step: disable them, end their sign-ins and live
    /// tunnels, cancel their enrolment codes and laptop request, revoke
    /// their personal devices and recall the laptop they hold. One audit
    /// entry. Their record and history stay.
    #[command(after_help = "Example:
  lanyard staff leave j.smith")]
    Leave {
        /// The staff member's username.
        username: String,
    },
    /// Import staff from CSV with the header username,name,email,department,priority,groups.
    ///
    /// Groups are separated by ';'. The whole file is checked first, in one
    /// pass: if any row is bad (a bad field, a username repeated in the file
    /// or already taken, an unknown group), nothing is written and every
    /// problem is listed by line.
    #[command(after_help = "Example:
  lanyard staff import staff.csv

with staff.csv:
  username,name,email,department,priority,groups
  m.jones,Mo Jones,m.jones@council.example,Housing,2,hr
  k.lee,Kim Lee,,Contact Centre,1,contact-centre;hr")]
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// List staff.
    #[command(after_help = "Examples:
  lanyard staff list
  lanyard staff list --json")]
    List,
    /// Show one staff member.
    #[command(after_help = "Example:
  lanyard staff show j.smith")]
    Show {
        /// The staff member's username.
        username: String,
    },
    /// Disable a staff member: they can no longer sign in; their sessions end.
    #[command(after_help = "Example:
  lanyard staff disable j.smith")]
    Disable {
        /// The staff member's username.
        username: String,
    },
    /// Enable a disabled staff member.
    #[command(after_help = "Example:
  lanyard staff enable j.smith")]
    Enable {
        /// The staff member's username.
        username: String,
    },
    /// Remove a disabled staff member for good, after revoking and removing
    /// the personal devices they enrolled. Refused for people with admin
    /// rights or laptop history: they stay, disabled.
    #[command(after_help = "Example:
  lanyard staff disable s.temp && lanyard staff remove s.temp")]
    Remove {
        /// The staff member's username (disabled first).
        username: String,
    },
    /// Set or reset a staff member's password (at least 10 characters;
    /// prompted for on a terminal). Whatever they were signed in with ends:
    /// their API tokens and agent sign-ins are revoked and their tunnels
    /// close. Resetting your own password ends the token you ran it with.
    #[command(after_help = "Examples:
  lanyard staff password j.smith
  echo \"$PASSWORD\" | lanyard staff password j.smith --password-stdin")]
    Password {
        /// The staff member's username.
        username: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Turn on TOTP for a staff member and print the otpauth:// URI for their app (shown once).
    #[command(after_help = "Examples:
  lanyard staff totp j.smith
  lanyard staff totp j.smith --disable")]
    Totp {
        /// The staff member's username.
        username: String,
        /// Turn TOTP off instead.
        #[arg(long)]
        disable: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Staff {
    pub username: String,
    pub name: String,
    pub email: String,
    pub department: String,
    pub priority: i64,
    pub groups: Vec<String>,
    pub admin: bool,
    #[serde(default)]
    pub role: String,
    pub active: bool,
    pub has_password: bool,
    pub totp: bool,
    pub created_at: String,
}

fn show(out: &mut Out<'_>, s: &Staff) -> Result<(), CliError> {
    if out.json {
        return Ok(out.json(s)?);
    }
    out.line(format!("username    {}", s.username))?;
    out.line(format!("name        {}", s.name))?;
    out.line(format!("email       {}", s.email))?;
    out.line(format!("department  {}", s.department))?;
    out.line(format!("priority    {}", s.priority))?;
    out.line(format!("groups      {}", join(&s.groups)))?;
    out.line(format!("role        {}", s.role))?;
    out.line(format!("active      {}", yes_no(s.active)))?;
    out.line(format!(
        "password    {}",
        if s.has_password { "set" } else { "not set" }
    ))?;
    out.line(format!("totp        {}", if s.totp { "on" } else { "off" }))?;
    out.line(format!("created     {}", s.created_at))?;
    Ok(())
}

pub async fn run(cli: &Cli, cmd: &StaffCommand, out: &mut Out<'_>) -> Result<(), CliError> {
    let client = cli.client(true)?;
    match cmd {
        StaffCommand::Add {
            username,
            name,
            email,
            department,
            priority,
            groups,
            role,
            admin,
            password_stdin,
        } => {
            let role = if *admin { "admin" } else { role.as_str() };
            let password = if *password_stdin {
                Some(super::read_secret("Password: ", true)?)
            } else {
                None
            };
            let body = json!({
                "username": username, "name": name, "email": email, "department": department,
                "priority": priority, "groups": groups, "role": role, "password": password,
            });
            let s: Staff = client.post("/api/v1/staff", &body).await?;
            if out.json {
                return Ok(out.json(&s)?);
            }
            out.line(format!(
                "added {} ({}), priority {}, groups {}",
                s.username,
                s.name,
                s.priority,
                join(&s.groups)
            ))?;
        }
        StaffCommand::Set {
            username,
            name,
            email,
            department,
            priority,
            role,
            groups,
            no_groups,
        } => {
            let mut body = serde_json::Map::new();
            let mut put = |k: &str, v: serde_json::Value| {
                body.insert(k.into(), v);
            };
            if let Some(v) = name {
                put("name", json!(v));
            }
            if let Some(v) = email {
                put("email", json!(v));
            }
            if let Some(v) = department {
                put("department", json!(v));
            }
            if let Some(v) = priority {
                put("priority", json!(v));
            }
            if let Some(v) = role {
                put("role", json!(v));
            }
            if *no_groups || !groups.is_empty() {
                put("groups", json!(groups));
            }
            if body.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: give --name, --email, --department, --priority, --role, --group or --no-groups".into(),
                ));
            }
            let s: Staff = client
                .call(
                    Method::PATCH,
                    &format!("/api/v1/staff/{}", encode(username)),
                    Some((
                        "application/json",
                        serde_json::to_vec(&serde_json::Value::Object(body))
                            .map_err(|e| CliError::Failed(e.to_string()))?,
                    )),
                )
                .await?;
            show(out, &s)?;
        }
        StaffCommand::Leave { username } => {
            let r: serde_json::Value = client
                .post(
                    &format!("/api/v1/staff/{}/leave", encode(username)),
                    &json!({}),
                )
                .await?;
            if out.json {
                return Ok(out.json(&r)?);
            }
            let list = |v: &serde_json::Value| {
                let items: Vec<&str> = v
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                if items.is_empty() {
                    "none".to_owned()
                } else {
                    items.join(", ")
                }
            };
            out.line(format!(
                "{username} has left: {}; {} sign-in(s) ended; {} enrolment code(s) cancelled; personal devices revoked: {}; laptop request {}; laptops recalled: {}",
                if r["disabled"] == json!(true) { "disabled" } else { "was disabled already" },
                r["sign_ins_ended"],
                r["codes_cancelled"],
                list(&r["devices_revoked"]),
                if r["request_cancelled"] == json!(true) { "cancelled" } else { "none open" },
                list(&r["laptops_recalled"]),
            ))?;
        }
        StaffCommand::Import { file } => {
            let csv = std::fs::read(file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let resp: serde_json::Value = client
                .call(
                    Method::POST,
                    "/api/v1/staff/import",
                    Some(("text/csv", csv)),
                )
                .await?;
            if out.json {
                return Ok(out.json(&resp)?);
            }
            out.line(format!(
                "imported {} staff from {}",
                resp["imported"],
                file.display()
            ))?;
        }
        StaffCommand::List => {
            let staff: Vec<Staff> = client.get("/api/v1/staff").await?;
            if out.json {
                return Ok(out.json(&staff)?);
            }
            let rows = staff
                .iter()
                .map(|s| {
                    vec![
                        s.username.clone(),
                        s.name.clone(),
                        s.department.clone(),
                        s.priority.to_string(),
                        join(&s.groups),
                        if s.active { "active" } else { "disabled" }.into(),
                        s.role.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            out.table(
                &[
                    "USERNAME",
                    "NAME",
                    "DEPARTMENT",
                    "PRIORITY",
                    "GROUPS",
                    "STATUS",
                    "ROLE",
                ],
                &rows,
            )?;
        }
        StaffCommand::Show { username } => {
            let s: Staff = client
                .get(&format!("/api/v1/staff/{}", encode(username)))
                .await?;
            show(out, &s)?;
        }
        StaffCommand::Disable { username } | StaffCommand::Enable { username } => {
            let verb = if matches!(cmd, StaffCommand::Disable { .. }) {
                "disable"
            } else {
                "enable"
            };
            let s: Staff = client
                .post(
                    &format!("/api/v1/staff/{}/{verb}", encode(username)),
                    &json!({}),
                )
                .await?;
            if out.json {
                return Ok(out.json(&s)?);
            }
            out.line(format!(
                "{} is now {}",
                s.username,
                if s.active { "active" } else { "disabled" }
            ))?;
        }
        StaffCommand::Remove { username } => {
            let path = format!("/api/v1/staff/{}", encode(username));
            let devices: serde_json::Value = client
                .call(Method::DELETE, &format!("{path}/devices"), None)
                .await?;
            let person: serde_json::Value = client.call(Method::DELETE, &path, None).await?;
            if out.json {
                return Ok(out.json(&json!({
                    "username": person["username"],
                    "removed": person["removed"],
                    "removed_devices": devices["removed_devices"],
                }))?);
            }
            out.line(format!(
                "removed {username} and {} personal device(s)",
                devices["removed_devices"]
            ))?;
        }
        StaffCommand::Password {
            username,
            password_stdin,
        } => {
            let password = super::read_secret("New password: ", *password_stdin)?;
            let _: serde_json::Value = client
                .post(
                    &format!("/api/v1/staff/{}/password", encode(username)),
                    &json!({ "password": password }),
                )
                .await?;
            out.done(
                json!({ "username": username, "password_set": true, "sign_ins_ended": true }),
                format!("password set for {username}; their sign-ins and API tokens have ended"),
            )?;
        }
        StaffCommand::Totp { username, disable } => {
            let path = format!("/api/v1/staff/{}/totp", encode(username));
            if *disable {
                client.delete(&path).await?;
                out.done(
                    json!({ "username": username, "totp": false }),
                    format!("TOTP turned off for {username}"),
                )?;
            } else {
                let resp: serde_json::Value = client.post(&path, &json!({})).await?;
                if out.json {
                    return Ok(out.json(&resp)?);
                }
                out.line(resp["otpauth_uri"].as_str().unwrap_or_default())?;
                eprintln!("TOTP is on for {username}: add the URI above to their authenticator app; it is not shown again");
            }
        }
    }
    Ok(())
}
