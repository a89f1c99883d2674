//! Who may reach what: a pure decision over a snapshot of the rules.
//!
//! [`decide_session`] says whether a live session may go on at all (person
//! active, device not revoked, certificate and token valid, rules fresh);
//! [`decide_stream`] adds the app: it exists, the person is in one of its
//! groups, and the device is of a kind it allows. Both are called for every
//! stream and again for every live session and stream whenever the rules
//! change, so a change takes effect on tunnels already open.

pub mod snapshot;

use std::collections::{BTreeSet, HashMap, HashSet};

use lanyard_proto::ErrorCode;

use crate::clock::Millis;
use crate::model::{DeviceKindRule, LaptopStatus};

/// How long the rules may go unconfirmed before every decision fails
/// closed, unless `[policy] rules_max_age` says otherwise.
pub const MAX_STALENESS_MS: Millis = 60_000;

/// A person as the rules see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub active: bool,
    pub priority: u8,
    pub groups: BTreeSet<String>,
}

/// An app and who may reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRule {
    pub name: String,
    pub target: String,
    pub groups: BTreeSet<String>,
    pub device_kind: DeviceKindRule,
    /// The names the agent's proxy knows it by.
    pub hosts: Vec<String>,
    pub protocol: lanyard_proto::AppProtocol,
    /// A UDP flow ends after this long without a datagram.
    pub flow_idle: std::time::Duration,
}

/// The rules at one moment.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub staff: HashMap<String, Person>,
    pub apps: HashMap<String, AppRule>,
    pub revoked_devices: HashSet<String>,
    /// Sign-ins (refresh-token families) ended lately: signed out, ended
    /// by ICT, or by a password reset. Lately is as long as an access
    /// token lasts, since a session cannot outlive its token once its
    /// sign-in can no longer refresh.
    pub ended_sign_ins: HashSet<String>,
    /// Council laptops by asset tag: their status, holder and pool.
    pub laptops: HashMap<String, LaptopAccess>,
    /// Whether a council laptop works only for its holder or pool group
    /// (`[policy] managed_requires_allocation`).
    pub managed_requires_allocation: bool,
    /// Live sessions (on any node) that must end: killed by an admin, or
    /// whose sign-in was ended.
    pub ended_sessions: HashSet<String>,
    /// `[policy] rules_max_age`, if set: otherwise [`MAX_STALENESS_MS`].
    pub max_age_ms: Option<Millis>,
    /// When these rules were last confirmed against the store.
    pub loaded_at: Millis,
}

impl Policy {
    /// The same people, apps and revocations (whenever they were loaded).
    pub fn same_rules(&self, other: &Policy) -> bool {
        self.staff == other.staff
            && self.apps == other.apps
            && self.revoked_devices == other.revoked_devices
            && self.ended_sign_ins == other.ended_sign_ins
            && self.laptops == other.laptops
            && self.managed_requires_allocation == other.managed_requires_allocation
            && self.ended_sessions == other.ended_sessions
    }
}

/// A council laptop as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaptopAccess {
    pub status: LaptopStatus,
    /// Who it is allocated to, while it is.
    pub holder: Option<String>,
    /// A pool laptop's group: any active member may use it.
    pub pool: Option<String>,
}

/// When the broker is busy, who is still let in: from one share of
/// capacity only priority 1 and 2 staff, from a higher share only priority
/// 1, so that the people who must keep working can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Agent sessions this node is sized for.
    pub capacity: usize,
    /// Percent of capacity from which only priorities 1-2 are let in.
    pub only_priority_1_2_at: u8,
    /// Percent of capacity from which only priority 1 is let in.
    pub only_priority_1_at: u8,
}

impl Admission {
    /// The lowest-ranked priority let in with `live` sessions open: 3, 2,
    /// 1, or 0 when even priority 1 must wait.
    pub fn lowest_admitted(&self, live: usize) -> u8 {
        let share = |percent: u8| self.capacity.saturating_mul(usize::from(percent)) / 100;
        if live >= self.capacity {
            0
        } else if live >= share(self.only_priority_1_at).max(1) {
            1
        } else if live >= share(self.only_priority_1_2_at).max(1) {
            2
        } else {
            3
        }
    }
}

/// May a person of `priority` open a session with `live` sessions open?
pub fn admit(admission: &Admission, priority: u8, live: usize) -> Result<(), Deny> {
    let lowest = admission.lowest_admitted(live);
    if priority <= lowest {
        Ok(())
    } else {
        Err(Deny::AtCapacity { lowest })
    }
}

/// Whether a device is a council laptop or a person's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Managed,
    Personal,
}

impl DeviceKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "managed" => Some(Self::Managed),
            "personal" => Some(Self::Personal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::Personal => "personal",
        }
    }
}

/// What is asking: one person on one device, with one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    pub username: &'a str,
    pub device_id: &'a str,
    pub device_kind: DeviceKind,
    /// A personal device's owner (the only person who may use it).
    pub owner: Option<&'a str>,
    /// A council laptop's asset tag.
    pub asset_tag: Option<&'a str>,
    pub cert_expires_at: Millis,
    /// When the access token behind the session expires (leeway included).
    pub token_expires_at: Millis,
    /// The sign-in (refresh-token family) behind the session.
    pub sign_in: Option<&'a str>,
}

/// Why something was refused. Each has a short label for metrics and a
/// message the agent prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    UnknownPerson,
    PersonDisabled,
    /// A personal device used by someone other than its owner.
    WrongOwner,
    DeviceRevoked,
    /// The sign-in behind the session was ended (signed out, ended by
    /// ICT, a replayed refresh token, or a password reset), or the session
    /// itself was ended by ICT.
    SignInEnded,
    /// A council laptop marked lost or retired.
    LaptopOutOfUse {
        tag: String,
        status: String,
    },
    /// A council laptop used by someone it is not allocated to (nor in
    /// its pool group): why, e.g. "LT-1 is allocated to j.smith, not to
    /// a.patel".
    NotHolder(String),
    CertificateExpired,
    TokenExpired,
    StaleRules,
    UnknownApp(String),
    NotInGroup(String),
    DeviceKind {
        app: String,
        allowed: &'static str,
    },
    /// The broker is busy; only priorities up to `lowest` are let in.
    AtCapacity {
        lowest: u8,
    },
}

impl Deny {
    /// A short, fixed label (metrics, audit detail).
    pub fn label(&self) -> &'static str {
        match self {
            Deny::UnknownPerson => "unknown_person",
            Deny::PersonDisabled => "person_disabled",
            Deny::WrongOwner => "wrong_owner",
            Deny::LaptopOutOfUse { .. } => "laptop_out_of_use",
            Deny::NotHolder(_) => "not_holder",
            Deny::DeviceRevoked => "device_revoked",
            Deny::CertificateExpired => "certificate_expired",
            Deny::TokenExpired => "token_expired",
            Deny::StaleRules => "stale_rules",
            Deny::UnknownApp(_) => "unknown_app",
            Deny::NotInGroup(_) => "not_in_group",
            Deny::DeviceKind { .. } => "device_kind",
            Deny::AtCapacity { .. } => "at_capacity",
            Deny::SignInEnded => "sign_in_ended",
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Deny::UnknownPerson | Deny::TokenExpired | Deny::SignInEnded => ErrorCode::Unauthorized,
            Deny::DeviceRevoked | Deny::CertificateExpired | Deny::LaptopOutOfUse { .. } => {
                ErrorCode::Revoked
            }
            Deny::StaleRules => ErrorCode::Unavailable,
            Deny::AtCapacity { .. } => ErrorCode::AtCapacity,
            Deny::UnknownApp(_) => ErrorCode::NotFound,
            Deny::PersonDisabled
            | Deny::WrongOwner
            | Deny::NotHolder(_)
            | Deny::NotInGroup(_)
            | Deny::DeviceKind { .. } => ErrorCode::Forbidden,
        }
    }

    /// The QUIC close code that tells the agent what to do when this ends
    /// its session.
    pub fn close_code(&self) -> u32 {
        use lanyard_proto::close;
        match self {
            Deny::DeviceRevoked | Deny::LaptopOutOfUse { .. } => close::DEVICE_REVOKED,
            Deny::CertificateExpired => close::CERT_EXPIRED,
            Deny::StaleRules => close::STALE_STATE,
            Deny::AtCapacity { .. } => close::AT_CAPACITY,
            Deny::TokenExpired => close::SIGNED_OUT,
            Deny::UnknownPerson
            | Deny::PersonDisabled
            | Deny::WrongOwner
            | Deny::NotHolder(_)
            | Deny::SignInEnded => close::SIGN_IN_ENDED,
            Deny::UnknownApp(_) | Deny::NotInGroup(_) | Deny::DeviceKind { .. } => {
                close::SIGNED_OUT
            }
        }
    }

    /// Whether this ends the whole session, not just one stream.
    pub fn ends_session(&self) -> bool {
        !matches!(
            self,
            Deny::UnknownApp(_) | Deny::NotInGroup(_) | Deny::DeviceKind { .. }
        )
    }
}

impl std::fmt::Display for Deny {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deny::UnknownPerson => write!(f, "unknown person; sign in again"),
            Deny::PersonDisabled => write!(f, "this person is disabled; contact ICT"),
            Deny::WrongOwner => write!(f, "this personal device belongs to someone else"),
            Deny::LaptopOutOfUse { tag, status } => {
                write!(
                    f,
                    "{tag} is marked {status}: it cannot be used; contact ICT"
                )
            }
            Deny::NotHolder(why) => write!(f, "{why}"),
            Deny::DeviceRevoked => write!(f, "this device has been revoked; contact ICT"),
            Deny::SignInEnded => write!(f, "this sign-in was ended; sign in again"),
            Deny::CertificateExpired => {
                write!(f, "this device's certificate has expired; enrol it again")
            }
            Deny::TokenExpired => write!(f, "the sign-in has expired; sign in again"),
            Deny::StaleRules => write!(
                f,
                "the broker cannot confirm access rules right now; try again shortly"
            ),
            Deny::UnknownApp(app) => write!(f, "no app named {app}"),
            Deny::NotInGroup(app) => {
                write!(f, "not allowed to reach {app}: not in any of its groups")
            }
            Deny::DeviceKind { app, allowed } => {
                write!(f, "{app} may only be reached from {allowed} devices")
            }
            Deny::AtCapacity { lowest: 0 } => write!(f, "at capacity, try again later"),
            Deny::AtCapacity { lowest } => write!(
                f,
                "at capacity, try again later (only priority 1{} staff are being let in)",
                if *lowest >= 2 { "-2" } else { "" }
            ),
        }
    }
}

/// A personal device is its owner's alone; a council laptop is anyone's
/// whom the rules allow.
pub fn may_use_device(kind: DeviceKind, owner: Option<&str>, username: &str) -> Result<(), Deny> {
    match kind {
        DeviceKind::Personal if owner != Some(username) => Err(Deny::WrongOwner),
        _ => Ok(()),
    }
}

/// A council laptop marked lost or retired is out of use, whoever holds
/// it and whatever it holds.
pub fn laptop_usable(policy: &Policy, asset_tag: Option<&str>) -> Result<(), Deny> {
    let Some(tag) = asset_tag else {
        return Ok(());
    };
    match policy.laptops.get(tag) {
        Some(l) if l.status.is_out_of_use() => Err(Deny::LaptopOutOfUse {
            tag: tag.to_owned(),
            status: l.status.as_str().to_owned(),
        }),
        Some(_) => Ok(()),
        None => Err(Deny::LaptopOutOfUse {
            tag: tag.to_owned(),
            status: "removed from the inventory".to_owned(),
        }),
    }
}

/// May `username` use council laptop `asset_tag`? Only its holder while it
/// is allocated, or any member of its pool group while it is not in
/// repair (unless the organisation does not track holders). Personal
/// devices are their owner's ([`may_use_device`]).
pub fn may_use_laptop(
    policy: &Policy,
    asset_tag: Option<&str>,
    username: &str,
) -> Result<(), Deny> {
    laptop_usable(policy, asset_tag)?;
    let Some((tag, laptop)) = asset_tag.and_then(|t| Some((t, policy.laptops.get(t)?))) else {
        return Ok(());
    };
    if !policy.managed_requires_allocation {
        return Ok(());
    }
    if laptop.status == LaptopStatus::InRepair {
        return Err(Deny::NotHolder(format!(
            "{tag} is in repair: it cannot be used until ICT returns it"
        )));
    }
    if let Some(pool) = &laptop.pool {
        let member = policy
            .staff
            .get(username)
            .is_some_and(|p| p.active && p.groups.contains(pool));
        return if member {
            Ok(())
        } else {
            Err(Deny::NotHolder(format!(
                "{tag} is a pool laptop of {pool}, and {username} is not in {pool}"
            )))
        };
    }
    match (laptop.status, laptop.holder.as_deref()) {
        (LaptopStatus::Allocated, Some(holder)) if holder == username => Ok(()),
        (LaptopStatus::Allocated, Some(holder)) => Err(Deny::NotHolder(format!(
            "{tag} is allocated to {holder}, not to {username}"
        ))),
        (status, _) => Err(Deny::NotHolder(format!(
            "{tag} is {status}, not allocated to anyone: ask ICT to assign it to {username}"
        ))),
    }
}

/// May this session go on at `now`?
pub fn decide_session(policy: &Policy, who: &Subject<'_>, now: Millis) -> Result<(), Deny> {
    if now - policy.loaded_at > policy.max_age_ms.unwrap_or(MAX_STALENESS_MS) {
        return Err(Deny::StaleRules);
    }
    if policy.revoked_devices.contains(who.device_id) {
        return Err(Deny::DeviceRevoked);
    }
    laptop_usable(policy, who.asset_tag)?;
    if who.cert_expires_at <= now {
        return Err(Deny::CertificateExpired);
    }
    let person = policy.staff.get(who.username).ok_or(Deny::UnknownPerson)?;
    if !person.active {
        return Err(Deny::PersonDisabled);
    }
    may_use_device(who.device_kind, who.owner, who.username)?;
    may_use_laptop(policy, who.asset_tag, who.username)?;
    if who.token_expires_at <= now {
        return Err(Deny::TokenExpired);
    }
    if who
        .sign_in
        .is_some_and(|s| policy.ended_sign_ins.contains(s))
    {
        return Err(Deny::SignInEnded);
    }
    Ok(())
}

/// May this session open a stream to `app` at `now`? The app's rule on
/// success.
pub fn decide_stream<'p>(
    policy: &'p Policy,
    who: &Subject<'_>,
    app: &str,
    now: Millis,
) -> Result<&'p AppRule, Deny> {
    decide_session(policy, who, now)?;
    let rule = policy
        .apps
        .get(app)
        .ok_or_else(|| Deny::UnknownApp(app.chars().take(64).collect()))?;
    // decide_session found the person.
    let person = &policy.staff[who.username];
    if rule.groups.is_disjoint(&person.groups) {
        return Err(Deny::NotInGroup(rule.name.clone()));
    }
    let kind_ok = match rule.device_kind {
        DeviceKindRule::Any => true,
        DeviceKindRule::Managed => who.device_kind == DeviceKind::Managed,
        DeviceKindRule::Personal => who.device_kind == DeviceKind::Personal,
    };
    if !kind_ok {
        return Err(Deny::DeviceKind {
            app: rule.name.clone(),
            allowed: rule.device_kind.as_str(),
        });
    }
    Ok(rule)
}

/// The apps this session may reach, sorted by name.
pub fn allowed_apps<'p>(policy: &'p Policy, who: &Subject<'_>, now: Millis) -> Vec<&'p AppRule> {
    let mut apps: Vec<&AppRule> = policy
        .apps
        .keys()
        .filter_map(|name| decide_stream(policy, who, name, now).ok())
        .collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    apps
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn policy() -> Policy {
        let mut p = Policy {
            loaded_at: NOW - 1_000,
            ..Policy::default()
        };
        let person = |active, groups: &[&str]| Person {
            active,
            priority: 2,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        p.staff.insert("a.patel".into(), person(true, &["hr"]));
        p.staff.insert("m.jones".into(), person(true, &["housing"]));
        p.staff.insert("k.lee".into(), person(false, &["hr"]));
        let app = |name: &str, groups: &[&str], kind| AppRule {
            name: name.into(),
            target: "127.0.0.1:1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            device_kind: kind,
            hosts: Vec::new(),
            protocol: lanyard_proto::AppProtocol::Tcp,
            flow_idle: std::time::Duration::from_secs(300),
        };
        p.apps.insert(
            "hr-system".into(),
            app("hr-system", &["hr"], DeviceKindRule::Managed),
        );
        p.apps.insert(
            "intranet".into(),
            app("intranet", &["hr", "housing"], DeviceKindRule::Any),
        );
        p.revoked_devices.insert("dead".into());
        p.ended_sign_ins.insert("ended".into());
        let laptop = |status, holder: Option<&str>, pool: Option<&str>| LaptopAccess {
            status,
            holder: holder.map(str::to_owned),
            pool: pool.map(str::to_owned),
        };
        p.managed_requires_allocation = true;
        p.laptops.insert(
            "LT-LOST".into(),
            laptop(LaptopStatus::Lost, Some("a.patel"), None),
        );
        for user in ["a.patel", "m.jones", "k.lee", "nobody"] {
            p.laptops.insert(
                user.into(),
                laptop(LaptopStatus::Allocated, Some(user), None),
            );
        }
        p.laptops.insert(
            "LT-1".into(),
            laptop(LaptopStatus::Allocated, Some("a.patel"), None),
        );
        p.laptops.insert(
            "LT-POOL".into(),
            laptop(LaptopStatus::InStock, None, Some("housing")),
        );
        p.laptops.insert(
            "LT-REPAIR".into(),
            laptop(LaptopStatus::InRepair, None, Some("hr")),
        );
        p
    }

    fn subject<'a>(user: &'a str, device: &'a str, kind: DeviceKind) -> Subject<'a> {
        Subject {
            username: user,
            device_id: device,
            device_kind: kind,
            owner: (kind == DeviceKind::Personal).then_some(user),
            // Each person's own council laptop, allocated to them.
            asset_tag: (kind == DeviceKind::Managed).then_some(user),
            cert_expires_at: NOW + 86_400_000,
            token_expires_at: NOW + 600_000,
            sign_in: Some("s1"),
        }
    }

    #[test]
    fn allowed_when_in_a_group_on_an_allowed_device() {
        let p = policy();
        let who = subject("a.patel", "d1", DeviceKind::Managed);
        assert_eq!(
            decide_stream(&p, &who, "hr-system", NOW).unwrap().name,
            "hr-system"
        );
        let names: Vec<_> = allowed_apps(&p, &who, NOW)
            .iter()
            .map(|a| &a.name)
            .collect();
        assert_eq!(names, ["hr-system", "intranet"]);
    }

    #[test]
    fn each_reason_to_deny() {
        let p = policy();
        let cases: Vec<(Subject, &str, Deny)> = vec![
            (
                subject("m.jones", "d1", DeviceKind::Managed),
                "hr-system",
                Deny::NotInGroup("hr-system".into()),
            ),
            (
                subject("a.patel", "d1", DeviceKind::Personal),
                "hr-system",
                Deny::DeviceKind {
                    app: "hr-system".into(),
                    allowed: "managed",
                },
            ),
            (
                subject("k.lee", "d1", DeviceKind::Managed),
                "intranet",
                Deny::PersonDisabled,
            ),
            (
                subject("nobody", "d1", DeviceKind::Managed),
                "intranet",
                Deny::UnknownPerson,
            ),
            (
                subject("a.patel", "dead", DeviceKind::Managed),
                "intranet",
                Deny::DeviceRevoked,
            ),
            (
                subject("a.patel", "d1", DeviceKind::Managed),
                "payroll",
                Deny::UnknownApp("payroll".into()),
            ),
            (
                Subject {
                    token_expires_at: NOW,
                    ..subject("a.patel", "d1", DeviceKind::Managed)
                },
                "intranet",
                Deny::TokenExpired,
            ),
            (
                Subject {
                    cert_expires_at: NOW - 1,
                    ..subject("a.patel", "d1", DeviceKind::Managed)
                },
                "intranet",
                Deny::CertificateExpired,
            ),
            (
                Subject {
                    asset_tag: Some("LT-LOST"),
                    ..subject("a.patel", "d1", DeviceKind::Managed)
                },
                "intranet",
                Deny::LaptopOutOfUse {
                    tag: "LT-LOST".into(),
                    status: "lost".into(),
                },
            ),
            (
                Subject {
                    owner: Some("m.jones"),
                    ..subject("a.patel", "p1", DeviceKind::Personal)
                },
                "intranet",
                Deny::WrongOwner,
            ),
            (
                Subject {
                    sign_in: Some("ended"),
                    ..subject("a.patel", "d1", DeviceKind::Managed)
                },
                "intranet",
                Deny::SignInEnded,
            ),
        ];
        for (who, app, want) in cases {
            assert_eq!(
                decide_stream(&p, &who, app, NOW).unwrap_err(),
                want,
                "{who:?} {app}"
            );
        }
    }

    #[test]
    fn admission_keeps_room_for_priority_staff() {
        let a = Admission {
            capacity: 100,
            only_priority_1_2_at: 80,
            only_priority_1_at: 90,
        };
        assert_eq!(a.lowest_admitted(0), 3);
        assert_eq!(a.lowest_admitted(79), 3);
        assert_eq!(a.lowest_admitted(80), 2);
        assert_eq!(a.lowest_admitted(89), 2);
        assert_eq!(a.lowest_admitted(90), 1);
        assert_eq!(a.lowest_admitted(99), 1);
        assert_eq!(a.lowest_admitted(100), 0);
        assert!(admit(&a, 3, 79).is_ok());
        assert_eq!(admit(&a, 3, 80), Err(Deny::AtCapacity { lowest: 2 }));
        assert!(admit(&a, 2, 85).is_ok());
        assert_eq!(admit(&a, 2, 90), Err(Deny::AtCapacity { lowest: 1 }));
        assert!(admit(&a, 1, 99).is_ok());
        assert_eq!(admit(&a, 1, 100), Err(Deny::AtCapacity { lowest: 0 }));
        let d = Deny::AtCapacity { lowest: 1 };
        assert_eq!(d.code(), ErrorCode::AtCapacity);
        assert!(
            d.to_string().starts_with("at capacity, try again later"),
            "{d}"
        );
        // A tiny capacity still lets priority 1 in until it is full.
        let tiny = Admission {
            capacity: 1,
            only_priority_1_2_at: 80,
            only_priority_1_at: 90,
        };
        assert_eq!(tiny.lowest_admitted(0), 3);
        assert_eq!(tiny.lowest_admitted(1), 0);
    }

    #[test]
    fn stale_rules_fail_closed() {
        let mut p = policy();
        let who = subject("a.patel", "d1", DeviceKind::Managed);
        p.loaded_at = NOW - MAX_STALENESS_MS;
        assert!(decide_session(&p, &who, NOW).is_ok());
        p.loaded_at = NOW - MAX_STALENESS_MS - 1;
        assert_eq!(decide_session(&p, &who, NOW), Err(Deny::StaleRules));
        assert!(Deny::StaleRules.ends_session());
        assert!(!Deny::NotInGroup("x".into()).ends_session());
    }

    #[test]
    fn a_council_laptop_works_for_its_holder_or_its_pool_group_only() {
        let mut p = policy();
        let on = |user: &'static str, tag: &'static str| Subject {
            asset_tag: Some(tag),
            ..subject(user, "d9", DeviceKind::Managed)
        };
        assert_eq!(decide_session(&p, &on("a.patel", "LT-1"), NOW), Ok(()));
        assert_eq!(
            decide_session(&p, &on("m.jones", "LT-1"), NOW),
            Err(Deny::NotHolder(
                "LT-1 is allocated to a.patel, not to m.jones".into()
            ))
        );
        // A pool laptop: any member of its group, no one else.
        assert_eq!(decide_session(&p, &on("m.jones", "LT-POOL"), NOW), Ok(()));
        assert!(matches!(
            decide_session(&p, &on("a.patel", "LT-POOL"), NOW),
            Err(Deny::NotHolder(why)) if why.contains("pool laptop of housing")
        ));
        // In repair: no one, pool or not.
        assert!(matches!(
            decide_session(&p, &on("a.patel", "LT-REPAIR"), NOW),
            Err(Deny::NotHolder(why)) if why.contains("in repair")
        ));
        // Returned to stock: its old holder is out.
        p.laptops.get_mut("LT-1").unwrap().status = LaptopStatus::InStock;
        p.laptops.get_mut("LT-1").unwrap().holder = None;
        assert!(matches!(
            decide_session(&p, &on("a.patel", "LT-1"), NOW),
            Err(Deny::NotHolder(why)) if why.contains("not allocated to anyone")
        ));
        // A council that does not track holders: anyone the rules allow,
        // but never a lost laptop.
        p.managed_requires_allocation = false;
        assert_eq!(decide_session(&p, &on("m.jones", "LT-1"), NOW), Ok(()));
        assert!(matches!(
            decide_session(&p, &on("a.patel", "LT-LOST"), NOW),
            Err(Deny::LaptopOutOfUse { .. })
        ));
    }
}
