//! Signing in to the web console with the organisation's provider, in a
//! real browser against a real OpenID provider (`oidc-provider`, run by
//! Node): the console's button, the provider's own sign-in page, the
//! callback, a session; a person in no mapped group refused with the
//! reason; a callback this browser did not start refused. Skipped, saying
//! so, without Chromium, chromedriver, axe-core, Node or oidc-provider.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use serde_json::json;

use lanyard_broker::testkit_oidc::{Provider, ProviderOptions};
use lanyard_e2e::axe::Axe;
use lanyard_e2e::webdriver::{Browser, Options};
use lanyard_e2e::BrokerProcess;

const PW: &str = "provider-password-1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The provider's own sign-in page, filled in as a person would.
fn at_the_provider(b: &Browser, user: &str) {
    if let Err(e) = b.wait_for_url("the provider's sign-in page", |u| {
        u.contains("/interaction/")
    }) {
        panic!("{e}: {}", b.page_source().unwrap_or_default());
    }
    b.fill("input[name=login]", user).unwrap();
    b.fill("input[name=password]", PW).unwrap();
    b.submit_form("form").unwrap();
    b.wait_for_url("back at the console", |u| u.contains("/login/sso/callback"))
        .unwrap();
}

#[test]
fn the_console_signs_people_in_with_the_organisations_provider() {
    let Some(axe) = Axe::for_test() else { return };
    // The console under a name, as at a council: the provider refuses a
    // claimed https redirect to a bare loopback address. The browser
    // resolves the name to 127.0.0.1 itself; nothing else is touched.
    let Some(b) = Browser::for_test_with(Options {
        extra_args: vec!["--host-resolver-rules=MAP lanyard.test 127.0.0.1".into()],
        ..Options::default()
    }) else {
        return;
    };
    let api_port = free_port();
    let base = format!("https://lanyard.test:{api_port}");
    let callback = format!("{base}/login/sso/callback");
    let mut options = ProviderOptions::new(json!({
        "f.jones": {"password": PW, "groups": ["grp-fin"]},
        "o.other": {"password": PW, "groups": ["grp-elsewhere"]},
    }));
    options.extra_redirects = vec![callback.clone()];
    let Some(provider) = Provider::start("console sso", &options) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"lanyard\"\nprovision = true\nconsole_redirect_url = \"{callback}\"\n",
            provider.issuer
        ),
    )
    .unwrap();
    let broker = BrokerProcess::start_at(
        &tmp.path().join("data"),
        &format!("127.0.0.1:{api_port}"),
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
        &[],
    );
    broker
        .lanyard(
            &["groups", "add", "finance", "--idp-group", "grp-fin"],
            None,
            None,
        )
        .ok();

    // A callback this browser did not start: refused, nothing made.
    b.goto(&format!("{base}/login/sso/callback?code=x&state=y"))
        .unwrap();
    let refused = b.text_of(".error-summary").unwrap();
    assert!(refused.contains("not started in this browser"), "{refused}");

    // The button, the provider's page, the callback, then the console.
    b.goto(&format!("{base}/login")).unwrap();
    axe.assert_accessible(&b, "sign-in with the provider's button");
    b.click_css("a[href='/login/sso']").unwrap();
    at_the_provider(&b, "f.jones");
    assert!(b.text_of("main").unwrap().contains("signed in as f.jones"));
    axe.assert_accessible(&b, "signed in with the provider");
    b.click_css("#continue").unwrap();
    b.wait_for_url("the person's own page", |u| u.ends_with("/me"))
        .unwrap();
    let me = b.text_of("main").unwrap();
    assert!(me.contains("f.jones") && me.contains("finance"), "{me}");
    let audit = broker.audit_json("staff.provision");
    assert!(audit.contains("f.jones"), "{audit}");
    b.submit_form("form.signout").unwrap();
    b.wait_for_url("signed out", |u| u.ends_with("/login"))
        .unwrap();

    // In no mapped group: refused, saying why, with no session. (First
    // the provider forgets f.jones, as another person's browser would.)
    b.goto(&format!(
        "{}/.well-known/openid-configuration",
        provider.issuer
    ))
    .unwrap();
    b.delete_cookies().unwrap();
    b.goto(&format!("{base}/login")).unwrap();
    b.click_css("a[href='/login/sso']").unwrap();
    at_the_provider(&b, "o.other");
    let why = b.text_of(".error-summary").unwrap();
    assert!(why.contains("in no group mapped"), "{why}");
    b.goto(&format!("{base}/me")).unwrap();
    assert!(b.current_url().unwrap().contains("/login"));
    provider.stop();
}
