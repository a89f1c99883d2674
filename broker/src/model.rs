//! The council's words, parsed once at the edge: a value of one of these
//! types is known to be valid, so the code behind it never checks again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused. The message names the value and what is wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// A short lowercase name: usernames, group names, app names.
fn parse_name(kind: &str, s: &str, max: usize) -> Result<String, Invalid> {
    let s = s.trim();
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = !s.is_empty()
        && s.len() <= max
        && first_ok
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(invalid(format!(
            "bad {kind} {s:?}: use 1-{max} characters a-z, 0-9, '.', '-' or '_', starting with a letter or digit"
        )))
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, Invalid> {
                parse_name($kind, s, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A staff member's login name, e.g. `j.smith`.
    Username, "username", 64
);
name_type!(
    /// An access group, e.g. `contact-centre`.
    GroupName, "group name", 64
);
name_type!(
    /// An internal app's name, e.g. `hr`.
    AppName, "app name", 64
);

/// Priority tier: 1 is the most urgent (front-line staff who must keep working).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim() {
            "1" => Ok(Self(1)),
            "2" => Ok(Self(2)),
            "3" => Ok(Self(3)),
            other => Err(invalid(format!("bad priority {other:?}: use 1, 2 or 3"))),
        }
    }
    pub fn from_i64(n: i64) -> Result<Self, Invalid> {
        Self::parse(&n.to_string())
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self(3)
    }
}

/// What a person may do with the admin API and the console. Each role
/// can do all that the ones below it can: `admin` everything; `ict`
/// laptops, requests, enrolment codes and sessions, but no access rules
/// (staff, groups, apps, tokens); `viewer` read the dashboard and the
/// lists; `staff` only their own page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Staff,
    Viewer,
    Ict,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Ict, Role::Viewer, Role::Staff];

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim() {
            "admin" => Ok(Self::Admin),
            "ict" => Ok(Self::Ict),
            "viewer" => Ok(Self::Viewer),
            "staff" => Ok(Self::Staff),
            other => Err(invalid(format!(
                "bad role {other:?}: use admin, ict, viewer or staff"
            ))),
        }
    }

    /// As stored; an unknown value (which the store's check forbids) reads
    /// as the least role.
    pub fn from_stored(s: &str) -> Self {
        Self::parse(s).unwrap_or(Self::Staff)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Ict => "ict",
            Self::Viewer => "viewer",
            Self::Staff => "staff",
        }
    }

    pub fn is_admin(self) -> bool {
        self == Self::Admin
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which devices an app may be reached from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKindRule {
    Managed,
    Personal,
    Any,
}

impl DeviceKindRule {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim() {
            "managed" => Ok(Self::Managed),
            "personal" => Ok(Self::Personal),
            "any" => Ok(Self::Any),
            other => Err(invalid(format!(
                "bad device kind {other:?}: use managed, personal or any"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::Personal => "personal",
            Self::Any => "any",
        }
    }
}

/// Where an app listens inside the council's network: `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Target(String);

impl Target {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if lanyard_proto::enrol::valid_host_port(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!(
                "bad target {s:?}: use HOST:PORT, e.g. hr.internal:443 or 10.0.0.5:8080"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name an app is known by, e.g. `hr.council.internal`: DNS-name
/// syntax, lowercased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostName(String);

impl HostName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        lanyard_proto::host::parse_host_name(s)
            .map(Self)
            .map_err(|e| {
                invalid(format!(
                    "bad host name {:?}: {e}, e.g. hr.council.internal",
                    s.trim()
                ))
            })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An app's host names: no repeats, at most
/// [`lanyard_proto::host::MAX_HOSTS_PER_APP`].
pub fn parse_host_names(names: &[String]) -> Result<Vec<HostName>, Invalid> {
    let mut hosts: Vec<HostName> = Vec::new();
    for n in names {
        let h = HostName::parse(n)?;
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    let max = lanyard_proto::host::MAX_HOSTS_PER_APP;
    if hosts.len() > max {
        return Err(invalid(format!(
            "too many host names ({}): an app has at most {max}",
            hosts.len()
        )));
    }
    Ok(hosts)
}

/// A UDP app's flow idle timeout, in seconds: 1 s to a day.
pub fn parse_flow_idle(secs: u64) -> Result<u32, Invalid> {
    match u32::try_from(secs) {
        Ok(s @ 1..=86_400) => Ok(s),
        _ => Err(invalid(format!(
            "bad flow idle timeout {secs} s: use 1 s to 1 day (default 5 minutes)"
        ))),
    }
}

/// The flow idle timeout of an app that does not say.
pub const DEFAULT_FLOW_IDLE_SECS: u32 = 300;

/// How an app is reached: `tcp` or `udp`.
pub fn parse_protocol(s: &str) -> Result<lanyard_proto::AppProtocol, Invalid> {
    lanyard_proto::AppProtocol::parse(s.trim())
        .ok_or_else(|| invalid(format!("bad protocol {:?}: use tcp or udp", s.trim())))
}

/// A laptop's asset tag as printed on its label, e.g. `LT-00421`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AssetTag(String);

impl AssetTag {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!(
                "bad asset tag {s:?}: use 1-64 characters A-Z, a-z, 0-9, '-', '_', '.' or '/'"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AssetTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text with a length limit and no control characters (names, notes).
pub fn parse_text(field: &str, s: &str, max: usize, required: bool) -> Result<String, Invalid> {
    let s = s.trim();
    if required && s.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    if s.chars().count() > max {
        return Err(invalid(format!("{field} is longer than {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(format!("{field} contains control characters")));
    }
    Ok(s.to_owned())
}

/// An email address, loosely: one '@' with text either side, no spaces.
pub fn parse_email(s: &str) -> Result<String, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    let ok = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(s.split_once('@'), Some((a, b)) if !a.is_empty() && b.contains('.') && !b.contains('@'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(invalid(format!("bad email {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Username::parse("j.smith").is_ok());
        assert_eq!(Username::parse(" j.smith ").unwrap().as_str(), "j.smith");
        for bad in ["", "J.Smith", ".hidden", "a b", "x'--", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn priorities() {
        assert_eq!(Priority::parse("1").unwrap().get(), 1);
        for bad in ["0", "4", "-1", "one", ""] {
            let err = Priority::parse(bad).unwrap_err();
            assert!(err.0.contains("use 1, 2 or 3"), "{err}");
        }
    }

    #[test]
    fn targets_and_tags() {
        assert!(Target::parse("hr.internal:443").is_ok());
        assert!(Target::parse("hr.internal").is_err());
        assert!(AssetTag::parse("LT-00421").is_ok());
        assert!(AssetTag::parse("LT 1").is_err());
    }

    #[test]
    fn text_and_email() {
        assert!(parse_text("name", "", 10, true).is_err());
        assert!(parse_text("name", "a\u{7}b", 10, false).is_err());
        assert_eq!(parse_email("").unwrap(), "");
        assert!(parse_email("a@b.gov.uk").is_ok());
        assert!(parse_email("a@b").is_err());
        assert!(parse_email("a b@c.uk").is_err());
    }
}

/// Where a council laptop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LaptopStatus {
    InStock,
    Allocated,
    InRepair,
    Lost,
    Retired,
}

impl LaptopStatus {
    pub const ALL: [LaptopStatus; 5] = [
        LaptopStatus::InStock,
        LaptopStatus::Allocated,
        LaptopStatus::InRepair,
        LaptopStatus::Lost,
        LaptopStatus::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LaptopStatus::InStock => "in-stock",
            LaptopStatus::Allocated => "allocated",
            LaptopStatus::InRepair => "in-repair",
            LaptopStatus::Lost => "lost",
            LaptopStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|st| st.as_str()).collect();
                invalid(format!("bad status {s:?}: use one of {}", all.join(", ")))
            })
    }

    /// Lost and retired laptops may not be used, enrolled or signed in on.
    pub fn is_out_of_use(self) -> bool {
        matches!(self, LaptopStatus::Lost | LaptopStatus::Retired)
    }
}

impl std::fmt::Display for LaptopStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for LaptopStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `YYYY-MM-DD`, or empty for none.
pub fn parse_date(field: &str, s: &str) -> std::result::Result<Option<String>, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() == 3
        && parts[0].len() == 4
        && parts[1].len() == 2
        && parts[2].len() == 2
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        && matches!(parts[0].parse::<u32>(), Ok(1990..=2200))
        && matches!(parts[1].parse::<u32>(), Ok(1..=12))
        && matches!(parts[2].parse::<u32>(), Ok(1..=31));
    if ok {
        Ok(Some(s.to_owned()))
    } else {
        Err(Invalid(format!("bad {field} {s:?}: use YYYY-MM-DD")))
    }
}
