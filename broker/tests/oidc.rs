//! The broker as an OpenID Connect relying party, against a certified
//! provider (`oidc-provider`, tests/oidc/provider.mjs) on 127.0.0.1, its
//! login page driven by curl. Skipped, saying so, when node or the package
//! is missing.

use std::time::Duration;

use lanyard_broker::auth::oidc::{Oidc, OidcError};
use lanyard_broker::config::OidcSettings;
use lanyard_broker::testkit_oidc::{browser_sign_in, code_and_state, Provider, ProviderOptions};
use serde_json::json;

fn users() -> serde_json::Value {
    json!({
        "alice": {"password": "alice-pw", "groups": ["hr", "staff"]},
        "bob": {"password": "bob-pw", "overage": true},
    })
}

fn settings(issuer: &str, client_id: &str) -> OidcSettings {
    OidcSettings {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: None,
        groups_claim: "groups".into(),
        username_claim: "preferred_username".into(),
        provision: false,
        redirect_ports: vec![53682, 53683, 53684],
        recheck_every: Duration::from_secs(3600),
        scopes: vec!["profile".into(), "email".into(), "offline_access".into()],
        console_redirect_url: None,
    }
}

/// begin → the browser signs in → the callback's code and state.
async fn sign_in_at(oidc: &Oidc, device: &str, user: &str, pw: &str) -> (String, String) {
    let url = oidc.begin(device, 53682).await.expect("begin");
    let (user, pw, url2) = (user.to_owned(), pw.to_owned(), url.clone());
    let callback = tokio::task::spawn_blocking(move || browser_sign_in(&url2, &user, &pw))
        .await
        .expect("the browser task ends")
        .expect("the provider signs the person in");
    assert!(
        callback.starts_with("http://127.0.0.1:53682/callback?"),
        "{callback}"
    );
    code_and_state(&callback)
}

#[tokio::test]
async fn a_person_signs_in_with_the_provider_and_a_code_works_once() {
    let Some(provider) = Provider::start("oidc sign-in", &ProviderOptions::new(users())) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    // The state is bound to the device that began the sign-in.
    let e = oidc.finish("dev-2", &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::BadState), "{e}");
    let id = oidc.finish("dev-1", &code, &state).await.expect("finish");
    assert_eq!(id.username, "alice");
    assert_eq!(id.groups, vec!["hr".to_owned(), "staff".to_owned()]);
    assert!(
        id.refresh_token.is_some(),
        "the provider gave a refresh token"
    );
    // The same code and state again: refused, not a second sign-in.
    let e = oidc.finish("dev-1", &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::BadState), "{e}");
    // A made-up state.
    let e = oidc
        .finish("dev-1", &code, "not-a-state")
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::BadState), "{e}");
    assert_eq!(oidc.pending_count(), 0);
}

#[tokio::test]
async fn a_redirect_port_not_configured_is_refused() {
    let Some(provider) = Provider::start("oidc redirect port", &ProviderOptions::new(users()))
    else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let e = oidc.begin("dev-1", 8080).await.unwrap_err();
    assert!(matches!(e, OidcError::PortNotConfigured(8080, _)), "{e}");
    assert!(e.to_string().contains("53682, 53683, 53684"), "{e}");
    assert_eq!(oidc.pending_count(), 0);
}

#[tokio::test]
async fn the_groups_overage_pointer_is_refused_with_the_fix() {
    let Some(provider) = Provider::start("oidc overage", &ProviderOptions::new(users())) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let (code, state) = sign_in_at(&oidc, "dev-1", "bob", "bob-pw").await;
    let e = oidc.finish("dev-1", &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::Overage { .. }), "{e}");
    assert!(e.to_string().contains("app roles"), "{e}");
}

#[tokio::test]
async fn an_hs256_id_token_is_refused_though_the_provider_advertises_it() {
    let Some(provider) = Provider::start("oidc HS256", &ProviderOptions::new(users())) else {
        return;
    };
    // A confidential client whose secret is the HMAC key: the provider
    // signs with it, and the broker still refuses the token.
    let mut s = settings(&provider.issuer, "lanyard-hs256");
    s.client_secret = Some("a-shared-secret-that-is-long-enough-for-hs256".into());
    let oidc = Oidc::new(s);
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    let e = oidc.finish("dev-1", &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::IdToken(_)), "{e}");
    assert!(e.to_string().contains("not allowed"), "{e}");
}

#[tokio::test]
async fn another_issuer_is_refused_at_discovery() {
    let Some(provider) = Provider::start("oidc issuer", &ProviderOptions::new(users())) else {
        return;
    };
    // The same provider under another name: its discovery document names
    // a different issuer.
    let other = provider.issuer.replace("127.0.0.1", "localhost");
    let oidc = Oidc::new(settings(&other, "lanyard"));
    let e = oidc.begin("dev-1", 53682).await.unwrap_err();
    assert!(matches!(e, OidcError::Provider(_)), "{e}");
    assert!(e.to_string().contains("discovery"), "{e}");
}

#[tokio::test]
async fn a_new_provider_key_fetches_the_jwks_again() {
    let Some(provider) = Provider::start("oidc key rotation", &ProviderOptions::new(users()))
    else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    oidc.finish("dev-1", &code, &state)
        .await
        .expect("first sign-in");
    // The provider restarts on the same port with a new signing key (kid):
    // the cached JWKS does not know it.
    let port = provider.port;
    provider.stop();
    let mut options = ProviderOptions::new(users());
    options.port = port;
    let provider = Provider::start("oidc key rotation", &options).expect("restarts");
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    let id = oidc
        .finish("dev-1", &code, &state)
        .await
        .expect("signs in with the new key");
    assert_eq!(id.username, "alice");
    drop(provider);
}

#[tokio::test]
async fn a_recheck_sees_group_changes_and_a_disabled_person() {
    let Some(provider) = Provider::start("oidc recheck", &ProviderOptions::new(users())) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    let id = oidc.finish("dev-1", &code, &state).await.expect("finish");
    let refresh = id.refresh_token.expect("refresh token");
    provider.change_user("alice", json!({"groups": ["staff"]}));
    let again = oidc.recheck(&refresh).await.expect("recheck");
    assert_eq!(again.username, "alice");
    assert_eq!(again.groups, vec!["staff".to_owned()]);
    let refresh = again.refresh_token.expect("a refresh token to keep");
    provider.change_user("alice", json!({"disabled": true}));
    let e = oidc.recheck(&refresh).await.unwrap_err();
    assert!(matches!(e, OidcError::RefreshRefused(_)), "{e}");
}

#[tokio::test]
async fn an_expired_id_token_is_refused_past_the_leeway_only() {
    let Some(provider) = Provider::start("oidc expiry", &ProviderOptions::new(users())) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    // The provider's ID tokens live 300 s. Within the leeway: accepted.
    oidc.set_clock_skew(300 + lanyard_broker::auth::oidc::LEEWAY_SECS - 5);
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    oidc.finish("dev-1", &code, &state)
        .await
        .expect("within the leeway");
    // Past it: refused.
    oidc.set_clock_skew(300 + lanyard_broker::auth::oidc::LEEWAY_SECS + 5);
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    let e = oidc.finish("dev-1", &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::IdToken(_)), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    let Some(provider) = Provider::start("oidc nonce", &ProviderOptions::new(users())) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let (code, state) = sign_in_at(&oidc, "dev-1", "alice", "alice-pw").await;
    // The provider put the sign-in's nonce in the token; the broker now
    // expects another one (as for a token injected from another sign-in).
    assert!(oidc.replace_nonce(&state, "not-the-nonce-sent"));
    let e = oidc.finish("dev-1", &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::IdToken(_)), "{e}");
    assert!(e.to_string().contains("nonce"), "{e}");
}

/// A device code sign-in (RFC 8628): the broker starts it at the
/// provider's device authorization endpoint, the person enters the code
/// on the provider's device page and signs in, the broker's poll ends
/// with the person's checked identity.
async fn device_sign_in_at(
    oidc: &Oidc,
    device: &str,
    user: &str,
    pw: &str,
    abort: bool,
) -> (
    lanyard_broker::auth::oidc::DeviceStarted,
    Result<lanyard_broker::auth::oidc::Identity, OidcError>,
    String,
) {
    let started = oidc.device_begin(device).await.expect("device begin");
    let (uri, code, user, pw) = (
        started.verification_uri.clone(),
        started.user_code.clone(),
        user.to_owned(),
        pw.to_owned(),
    );
    let browser = tokio::task::spawn_blocking(move || {
        lanyard_broker::testkit_oidc::device_sign_in(&uri, &code, &user, &pw, abort)
    });
    let (finished, page) = tokio::join!(oidc.device_finish(device, &started.handle), browser);
    let page = page
        .expect("the browser task ends")
        .expect("the device page");
    (started, finished, page)
}

#[tokio::test]
async fn a_person_signs_in_with_a_device_code_once() {
    let Some(provider) = Provider::start("oidc device code", &ProviderOptions::new(users())) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let (started, finished, page) =
        device_sign_in_at(&oidc, "dev-1", "alice", "alice-pw", false).await;
    assert!(
        started.verification_uri.starts_with(&provider.issuer),
        "{started:?}"
    );
    assert!(
        started.expires_in_secs > 0 && started.interval_secs > 0,
        "{started:?}"
    );
    assert!(page.contains("Sign-in Success"), "{page}");
    let id = finished.expect("the device sign-in ends with an identity");
    assert_eq!(id.username, "alice");
    assert_eq!(id.groups, vec!["hr".to_owned(), "staff".to_owned()]);
    assert!(id.refresh_token.is_some(), "a refresh token for re-checks");
    // The handle is good once, and only for the device that began it.
    let e = oidc
        .device_finish("dev-1", &started.handle)
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::DeviceUnknown), "{e}");
    let other = oidc.device_begin("dev-1").await.expect("begin again");
    let e = oidc
        .device_finish("dev-2", &other.handle)
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::DeviceUnknown), "{e}");
    assert_eq!(
        oidc.device_pending_count(),
        1,
        "dev-1's sign-in still waits"
    );
}

#[tokio::test]
async fn a_device_code_refused_at_the_provider_or_expired_says_so() {
    let mut options = ProviderOptions::new(users());
    options.device_code_ttl_secs = 8;
    let Some(provider) = Provider::start("oidc device code refused", &options) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    // The person aborts on the provider's confirmation page.
    let (_, finished, _) = device_sign_in_at(&oidc, "dev-1", "alice", "alice-pw", true).await;
    let e = finished.unwrap_err();
    assert!(matches!(e, OidcError::DeviceDenied), "{e}");
    assert!(e.to_string().contains("access_denied"), "{e}");
    // Nobody enters the code: it expires, and the poll ends.
    let started = oidc.device_begin("dev-1").await.expect("begin");
    assert!(started.expires_in_secs <= 8, "{started:?}");
    let t = std::time::Instant::now();
    let e = oidc
        .device_finish("dev-1", &started.handle)
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::DeviceExpired), "{e}");
    assert!(
        e.to_string().contains("lanyard-agent login --device-code"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_provider_without_the_device_flow_is_named() {
    let mut options = ProviderOptions::new(users());
    options.device_flow = false;
    let Some(provider) = Provider::start("oidc no device flow", &options) else {
        return;
    };
    let oidc = Oidc::new(settings(&provider.issuer, "lanyard"));
    let e = oidc.device_begin("dev-1").await.unwrap_err();
    assert!(matches!(e, OidcError::NoDeviceFlow), "{e}");
    assert_eq!(
        e.to_string(),
        "the provider does not offer the device code flow; use --sso"
    );
}
