//! Checking a person's password and second factor, shared by the admin
//! API's login and the agents' sign-in.
//!
//! A wrong username costs the same argon2 work as a wrong password and gets
//! the same answer; so do a missing or wrong second factor: nothing is said
//! about an account (that it needs TOTP, that it is disabled) until every
//! factor has been checked. Repeated failures for one username, and from one
//! source address, are slowed down; a TOTP code can be used once only.
//!
//! What arrives is bounded before any state is kept: the username must
//! parse as a [`Username`] (at most 64 characters) and the password be at
//! most [`MAX_PASSWORD`] bytes, or the answer is "wrong" at once; the
//! throttle holds at most [`MAX_TRACKED`] usernames and as many addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::auth::failures::FailureTally;
use crate::auth::sealed::SealKey;
use crate::clock::Millis;
use crate::model::Username;
use crate::store::Store;
use crate::store::{AuditEntry, StoreError};

/// After this many failures in a row, a username is locked for [`LOCKOUT_MS`].
pub const MAX_FAILURES: u32 = 5;
/// After this many failures from one source address within [`LOCKOUT_MS`]
/// (across usernames: password spraying), that address waits too.
pub const MAX_FAILURES_PER_ADDRESS: u32 = 30;
pub const LOCKOUT_MS: Millis = 60_000;
/// Usernames (and, separately, addresses) the throttle keeps at most.
pub const MAX_TRACKED: usize = 10_000;
/// Longer passwords are refused before any hashing.
pub const MAX_PASSWORD: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub username: String,
    pub admin: bool,
    pub role: crate::model::Role,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// A wrong username, password or second factor: the same answer for
    /// each, so the answer confirms nothing.
    #[error(
        "wrong username or password (or TOTP code: accounts with TOTP need --totp CODE, used once)"
    )]
    BadCredentials,
    #[error("this account is disabled; contact ICT")]
    Disabled,
    #[error("too many failed sign-ins; wait a minute and try again")]
    Throttled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SignInError> for crate::api::error::ApiError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::Store(s) => s.into(),
            other => crate::api::error::ApiError::Unauthorized(other.to_string()),
        }
    }
}

/// Counts recent failures per username and per source address (in memory,
/// per node), each map bounded.
#[derive(Debug, Default)]
pub struct Throttle {
    by_username: Mutex<HashMap<String, (u32, Millis)>>,
    by_address: Mutex<HashMap<IpAddr, (u32, Millis)>>,
    /// Failed enrolments, per address (apart from sign-ins).
    enrolments_by_address: Mutex<HashMap<IpAddr, (u32, Millis)>>,
}

fn locked_in<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, (u32, Millis)>>,
    key: &K,
    most: u32,
    now: Millis,
) -> bool {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    matches!(map.get(key), Some((n, last)) if *n >= most && now - last < LOCKOUT_MS)
}

/// Counts a failure for `key`; at [`MAX_TRACKED`] keys, stale ones go
/// first and then the longest quiet, so the map never grows past it.
fn fail_in<K: std::hash::Hash + Eq + Clone>(
    map: &Mutex<HashMap<K, (u32, Millis)>>,
    key: &K,
    now: Millis,
) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if !map.contains_key(key) && map.len() >= MAX_TRACKED {
        map.retain(|_, (_, last)| now - *last < LOCKOUT_MS);
        if map.len() >= MAX_TRACKED {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
    }
    let entry = map.entry(key.clone()).or_insert((0, now));
    if now - entry.1 >= LOCKOUT_MS {
        entry.0 = 0;
    }
    entry.0 += 1;
    entry.1 = now;
}

impl Throttle {
    fn locked(&self, username: &Username, from: Option<IpAddr>, now: Millis) -> bool {
        locked_in(&self.by_username, &username.to_string(), MAX_FAILURES, now)
            || from
                .is_some_and(|ip| locked_in(&self.by_address, &ip, MAX_FAILURES_PER_ADDRESS, now))
    }

    fn fail(&self, username: Option<&Username>, from: Option<IpAddr>, now: Millis) {
        if let Some(u) = username {
            fail_in(&self.by_username, &u.to_string(), now);
        }
        if let Some(ip) = from {
            fail_in(&self.by_address, &ip, now);
        }
    }

    fn succeed(&self, username: &Username) {
        self.by_username
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(username.as_str());
    }

    /// Whether `ip` has failed to enrol too often lately.
    pub fn enrolments_locked(&self, ip: IpAddr, now: Millis) -> bool {
        locked_in(
            &self.enrolments_by_address,
            &ip,
            MAX_FAILURES_PER_ADDRESS,
            now,
        )
    }

    /// Counts a failed enrolment from `ip`.
    pub fn enrolment_failed(&self, ip: IpAddr, now: Millis) {
        fail_in(&self.enrolments_by_address, &ip, now);
    }

    /// Usernames and addresses tracked now.
    pub fn tracked(&self) -> (usize, usize) {
        let users = self.by_username.lock().map_or(0, |m| m.len());
        let addresses = self.by_address.lock().map_or(0, |m| m.len());
        (users, addresses)
    }
}

/// Checks `password` and `totp` for `username` at `now`, coming `from` a
/// source address (when known); audits failures.
#[allow(clippy::too_many_arguments)]
pub async fn check_credentials(
    store: &Store,
    throttle: &Throttle,
    seal: &SealKey,
    failures: &FailureTally,
    username: &str,
    password: &str,
    totp: Option<&str>,
    from: Option<IpAddr>,
    now: Millis,
) -> Result<Person, SignInError> {
    // Bounded before anything is kept or hashed: a name that is not a
    // username is a wrong one, and so is an absurd password.
    let Ok(username) = Username::parse(&username.trim().to_ascii_lowercase()) else {
        throttle.fail(None, from, now);
        failures.note(from, "signin", "not a username", username, now);
        return Err(SignInError::BadCredentials);
    };
    if password.len() > MAX_PASSWORD {
        throttle.fail(Some(&username), from, now);
        let why = "wrong username or password";
        failures.note(from, "signin", why, username.as_str(), now);
        return Err(SignInError::BadCredentials);
    }
    let result = check(store, throttle, seal, &username, password, totp, from, now).await;
    match &result {
        Ok(_) => throttle.succeed(&username),
        Err(SignInError::Store(_)) => {}
        Err(e) => {
            if !matches!(e, SignInError::Throttled) {
                throttle.fail(Some(&username), from, now);
            }
            // Counted, and audited in aggregate (the caller proved
            // nothing); a disabled person gave every factor: audited now.
            if matches!(e, SignInError::Disabled) {
                let why = e.to_string();
                let entry =
                    AuditEntry::denied(username.as_str(), "signin", username.as_str(), &why);
                if let Err(err) = store.audit_only(now, entry).await {
                    tracing::warn!(error = %err, "could not audit a refused sign-in");
                }
            } else {
                let why = match e {
                    SignInError::Throttled => "throttled",
                    _ => "wrong username or password",
                };
                failures.note(from, "signin", why, username.as_str(), now);
            }
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn check(
    store: &Store,
    throttle: &Throttle,
    seal: &SealKey,
    username: &Username,
    password: &str,
    totp: Option<&str>,
    from: Option<IpAddr>,
    now: Millis,
) -> Result<Person, SignInError> {
    if throttle.locked(username, from, now) {
        return Err(SignInError::Throttled);
    }
    let creds = store.staff_credentials(username.as_str()).await?;
    let stored = creds
        .as_ref()
        .and_then(|c| c.password_hash.clone())
        .unwrap_or_else(|| super::password::decoy_hash().to_owned());
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || super::password::verify(&password, &stored))
        .await
        .unwrap_or(false);
    let creds = match creds {
        Some(c) if matches && c.password_hash.is_some() => c,
        _ => return Err(SignInError::BadCredentials),
    };
    // Every factor before anything about the account is said: a missing
    // or wrong code gets the same answer as a wrong password.
    if let Some(sealed) = &creds.totp_sealed {
        let code = totp.ok_or(SignInError::BadCredentials)?;
        let secret = seal.open(sealed, &creds.username).map_err(|e| {
            tracing::error!(username = %creds.username, error = %e, "cannot open a TOTP secret");
            SignInError::BadCredentials
        })?;
        let step =
            super::totp::verify(&secret, code, now / 1000).ok_or(SignInError::BadCredentials)?;
        if !store.staff_claim_totp_step(&creds.username, step).await? {
            return Err(SignInError::BadCredentials);
        }
    }
    if !creds.active {
        return Err(SignInError::Disabled);
    }
    Ok(Person {
        username: creds.username,
        admin: creds.admin,
        role: creds.role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Priority, Username};
    use crate::store::staff::NewStaff;
    use crate::testkit::TestStore;

    const NOW: Millis = 1_800_000_000_000;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, n]))
    }

    #[test]
    fn the_throttle_never_holds_more_than_its_cap() {
        let t = Throttle::default();
        for i in 0..(MAX_TRACKED + 500) {
            let name = Username::parse(&format!("u{i}")).unwrap();
            t.fail(Some(&name), None, NOW);
        }
        assert_eq!(t.tracked().0, MAX_TRACKED);
        for i in 0..(MAX_TRACKED + 500) {
            let addr = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            t.fail(None, Some(addr), NOW);
        }
        assert_eq!(t.tracked().1, MAX_TRACKED);
    }

    #[test]
    fn spraying_from_one_address_is_slowed_down_across_usernames() {
        let t = Throttle::default();
        let victim = Username::parse("j.smith").unwrap();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            assert!(!t.locked(&victim, ip(1), NOW));
            let name = Username::parse(&format!("spray{i}")).unwrap();
            t.fail(Some(&name), ip(1), NOW);
        }
        assert!(t.locked(&victim, ip(1), NOW), "the address is locked");
        assert!(!t.locked(&victim, ip(2), NOW), "others are not");
        assert!(!t.locked(&victim, ip(1), NOW + LOCKOUT_MS), "for a minute");
    }

    async fn person(store: &Store, username: &str, password: &str, active: bool) {
        let new = NewStaff {
            username: Username::parse(username).unwrap(),
            name: username.into(),
            email: String::new(),
            department: String::new(),
            priority: Priority::parse("3").unwrap(),
            groups: vec![],
            role: crate::model::Role::Staff,
            password_hash: Some(super::super::password::hash(password).unwrap()),
        };
        store.staff_add("test", &new, NOW).await.unwrap();
        if !active {
            store
                .staff_set_active("test", username, false, NOW)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn unbounded_input_keeps_nothing_and_nothing_is_told_before_every_factor() {
        let ts = TestStore::sqlite().await;
        let store = &ts.store;
        let (t, seal) = (Throttle::default(), SealKey::from_bytes(&[7; 32]).unwrap());
        let failures = FailureTally::default();
        person(store, "d.gone", "Correct-Horse-Battery-9", false).await;
        let check = |user: String, pw: &'static str| {
            let (t, seal, failures) = (&t, &seal, &failures);
            async move { check_credentials(store, t, seal, failures, &user, pw, None, ip(9), NOW).await }
        };
        // A multi-KiB name, and one with control characters: refused as
        // wrong, and no username is kept for them.
        let huge = "x".repeat(64 * 1024);
        let e = check(huge, "whatever").await.unwrap_err();
        assert!(matches!(e, SignInError::BadCredentials));
        let e = check("a\u{1b}[2Jb".into(), "whatever").await.unwrap_err();
        assert!(matches!(e, SignInError::BadCredentials));
        assert_eq!(t.tracked().0, 0, "no username kept for bad input");
        // A wrong password for a disabled person says only "wrong"; the
        // disable is told once the password is right.
        let e = check("d.gone".into(), "wrong-password-1")
            .await
            .unwrap_err();
        assert!(matches!(e, SignInError::BadCredentials), "{e}");
        let e = check("d.gone".into(), "Correct-Horse-Battery-9")
            .await
            .unwrap_err();
        assert!(matches!(e, SignInError::Disabled), "{e}");
        // The failures are tallied, not audited one by one; a flush writes
        // one row for the source.
        let all = crate::store::audit::AuditFilter {
            limit: 100,
            ..Default::default()
        };
        let signin_rows = |rows: Vec<crate::store::audit::AuditRow>| {
            rows.iter().filter(|r| r.action == "signin").count()
        };
        let before = signin_rows(store.audit_list(&all).await.unwrap());
        assert_eq!(before, 1, "only the disable is audited at once");
        assert_eq!(failures.flush(store, NOW).await, 1);
        assert_eq!(signin_rows(store.audit_list(&all).await.unwrap()), 2);
    }
}
