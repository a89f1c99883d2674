//! Checking a person's password and second factor, shared by the admin
//! API's login and the agents' sign-in.
//!
//! A wrong username costs the same argon2 work as a wrong password and gets
//! the same answer. Repeated failures for one username are slowed down, and a
//! TOTP code can be used once only.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::sealed::SealKey;
use crate::clock::Millis;
use crate::store::Store;
use crate::store::{AuditEntry, StoreError};

/// After this many failures in a row, a username is locked for [`LOCKOUT_MS`].
pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT_MS: Millis = 60_000;
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub username: String,
    pub admin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("a TOTP code is required for this account")]
    TotpRequired,
    #[error("wrong or already used TOTP code")]
    BadTotp,
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

/// Counts recent failures per username (in memory, per node).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Millis)>>,
}

impl Throttle {
    fn locked(&self, username: &str, now: Millis) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        matches!(map.get(username), Some((n, last)) if *n >= MAX_FAILURES && now - last < LOCKOUT_MS)
    }

    fn fail(&self, username: &str, now: Millis) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (_, last)| now - *last < LOCKOUT_MS);
        }
        let entry = map.entry(username.to_owned()).or_insert((0, now));
        if now - entry.1 >= LOCKOUT_MS {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
    }

    fn succeed(&self, username: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(username);
    }
}

/// Checks `password` and `totp` for `username` at `now`; audits failures.
pub async fn check_credentials(
    store: &Store,
    throttle: &Throttle,
    seal: &SealKey,
    username: &str,
    password: &str,
    totp: Option<&str>,
    now: Millis,
) -> Result<Person, SignInError> {
    let username = username.trim().to_ascii_lowercase();
    let result = check(store, throttle, seal, &username, password, totp, now).await;
    match &result {
        Ok(_) => throttle.succeed(&username),
        Err(SignInError::Store(_)) => {}
        Err(e) => {
            if !matches!(e, SignInError::Throttled) {
                throttle.fail(&username, now);
            }
            let target: String = username.chars().take(64).collect();
            let entry = AuditEntry::denied(&target, "signin", &target, &e.to_string());
            if let Err(err) = store.audit_only(now, entry).await {
                tracing::warn!(error = %err, "could not audit a failed sign-in");
            }
        }
    }
    result
}

async fn check(
    store: &Store,
    throttle: &Throttle,
    seal: &SealKey,
    username: &str,
    password: &str,
    totp: Option<&str>,
    now: Millis,
) -> Result<Person, SignInError> {
    if throttle.locked(username, now) {
        return Err(SignInError::Throttled);
    }
    let creds = store.staff_credentials(username).await?;
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
    if !creds.active {
        return Err(SignInError::Disabled);
    }
    if let Some(sealed) = &creds.totp_sealed {
        let code = totp.ok_or(SignInError::TotpRequired)?;
        let secret = seal.open(sealed, &creds.username).map_err(|e| {
            tracing::error!(username = %creds.username, error = %e, "cannot open a TOTP secret");
            SignInError::BadTotp
        })?;
        let step = super::totp::verify(&secret, code, now / 1000).ok_or(SignInError::BadTotp)?;
        if !store.staff_claim_totp_step(&creds.username, step).await? {
            return Err(SignInError::BadTotp);
        }
    }
    Ok(Person {
        username: creds.username,
        admin: creds.admin,
    })
}
