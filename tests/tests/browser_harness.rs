//! The browser harness the web console's tests stand on: headless Chromium
//! through chromedriver (tests/src/webdriver.rs), axe-core's WCAG checks
//! (tests/src/axe.rs) and screenshots at two widths
//! (tests/src/screenshots.rs), tried on small pages served here. Skipped,
//! saying so, without Chromium, chromedriver or axe-core (.ci/run installs
//! them).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_e2e::axe::{format_violations, Axe};
use lanyard_e2e::screenshots::{png_size, screenshot_both_widths};
use lanyard_e2e::webdriver::{keys, Browser, Error};

/// A policy as strict as the console's: scripts from the origin only (none
/// inline), no inline styles, Trusted Types required. `default-src 'self'`
/// alone is a looser case of it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; \
    require-trusted-types-for 'script'; trusted-types 'none'";

const FORM: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Find a person</title></head>
<body><main>
<h1>Find a person</h1>
<form id="find" action="/found" method="get">
  <label for="who">Name</label>
  <input id="who" name="who" type="text" value="placeholder">
  <button type="submit">Find</button>
</form>
<p id="note">Type a name.</p>
</main>
<script>document.documentElement.dataset.inline = 'ran';</script>
</body></html>"#;

/// The results: longer than a window, to be screenshotted whole.
fn found() -> String {
    let rows: String = (1..=60).map(|i| format!("<li>Row {i}</li>")).collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Found</title></head>
<body><main><h1>Results</h1><p id="result">One person found.</p>
<ul>{rows}</ul></main></body></html>"#
    )
}

const BROKEN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Broken</title></head>
<body><main>
<h1>Broken</h1>
<img src="/found" id="badge">
<input id="nameless" type="text" name="q">
</main></body></html>"#;

/// A site of the three pages, served with the CSP and a session cookie.
fn site() -> String {
    let addr = lanyard_e2e::http_site(
        &[
            ("Content-Security-Policy", CSP),
            (
                "Set-Cookie",
                "sid=abc123; Path=/; HttpOnly; SameSite=Strict",
            ),
        ],
        &[("/form", FORM), ("/found", &found()), ("/broken", BROKEN)],
    );
    format!("http://{addr}")
}

/// The form page's policy holds: its inline script did not run.
fn assert_csp_in_force(browser: &Browser) {
    let inline = browser
        .execute(
            "return document.documentElement.dataset.inline || null;",
            &[],
        )
        .unwrap();
    assert_eq!(inline, serde_json::Value::Null, "the CSP is not in force");
}

#[test]
fn a_form_is_filled_and_sent_and_the_page_screenshotted_at_two_widths() {
    let Some(mut browser) = Browser::for_test() else {
        return;
    };
    let base = site();
    browser.goto(&format!("{base}/form")).unwrap();
    assert_eq!(browser.title().unwrap(), "Find a person");
    assert!(browser.current_url().unwrap().ends_with("/form"));
    assert!(browser.page_source().unwrap().contains("Type a name."));
    assert_eq!(browser.text_of("#note").unwrap(), "Type a name.");

    assert_csp_in_force(&browser);

    let field = browser.find("#who").unwrap();
    assert_eq!(
        browser.attribute(&field, "name").unwrap().as_deref(),
        Some("who")
    );
    assert_eq!(browser.attribute(&field, "title").unwrap(), None);
    browser.clear(&field).unwrap();
    browser.send_keys(&field, "a.jones").unwrap();
    assert_eq!(browser.property(&field, "value").unwrap(), "a.jones");
    let echoed = browser
        .execute(
            "return arguments[0].value + '/' + arguments[1];",
            &[field.to_json(), serde_json::json!(7)],
        )
        .unwrap();
    assert_eq!(echoed, "a.jones/7");
    let later = browser
        .execute_async(
            "const done = arguments[arguments.length - 1]; setTimeout(() => done(arguments[0] * 2), 10);",
            &[serde_json::json!(21)],
        )
        .unwrap();
    assert_eq!(later, 42);

    // Absent elements: none now, and a bounded wait that names them.
    assert!(browser.find_all("table").unwrap().is_empty());
    browser.set_wait(std::time::Duration::from_millis(200));
    match browser.find("#missing") {
        Err(Error::Timeout(what)) => assert!(what.contains("#missing"), "{what}"),
        other => panic!("find of an absent element: {other:?}"),
    }
    browser.set_wait(std::time::Duration::from_secs(5));

    let cookie = browser.cookie("sid").unwrap().expect("the sid cookie");
    assert_eq!(cookie.value, "abc123");
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"), "{cookie:?}");
    assert!(!cookie.secure, "{cookie:?}");

    // The keyboard: Tab moves the focus from the field to its button.
    browser.click(&field).unwrap();
    assert_eq!(browser.active_element().unwrap(), field);
    browser.press(keys::TAB).unwrap();
    let button = browser.find("#find button").unwrap();
    assert_eq!(browser.active_element().unwrap(), button);
    assert!(browser.displayed(&button).unwrap());
    assert_eq!(
        browser.css_value(&button, "display").unwrap(),
        "inline-block"
    );

    browser.submit_form("#find").unwrap();
    let url = browser
        .wait_for_url("the results", |u| u.contains("/found"))
        .unwrap();
    assert!(url.ends_with("/found?who=a.jones"), "{url}");
    assert_eq!(browser.text_of("#result").unwrap(), "One person found.");

    let shots = screenshot_both_widths(&browser, "harness results").unwrap();
    assert!(shots[0].ends_with("console-screenshots/harness-results-1280.png"));
    assert!(shots[1].ends_with("console-screenshots/harness-results-320.png"));
    let (wide, tall) = (png_size(&shots[0]).unwrap(), png_size(&shots[1]).unwrap());
    assert_eq!(wide.0, 1280);
    assert_eq!(tall.0, 320);
    // The whole page, not just the window (800 and 640 pixels high).
    assert!(wide.1 > 800 && tall.1 > 640, "{wide:?} {tall:?}");
    let size = browser
        .execute("return [window.innerWidth, window.innerHeight];", &[])
        .unwrap();
    assert_eq!(
        size,
        serde_json::json!([1280, 800]),
        "the window was not put back"
    );

    // A WebDriver error comes back with chromedriver's words.
    let err = browser
        .execute("throw new Error('boom');", &[])
        .unwrap_err();
    assert!(
        matches!(&err, Error::WebDriver { error, message, .. }
            if error == "javascript error" && message.contains("boom")),
        "{err}"
    );
}

#[test]
fn axe_passes_an_accessible_page_and_names_what_a_broken_one_breaks() {
    let Some(axe) = Axe::for_test() else { return };
    let Some(browser) = Browser::for_test() else {
        return;
    };
    let base = site();

    browser.goto(&format!("{base}/form")).unwrap();
    // axe-core goes in through WebDriver all the same.
    assert_csp_in_force(&browser);
    let violations = axe.check(&browser).unwrap();
    assert!(
        violations.is_empty(),
        "{}",
        format_violations("the form page", &violations)
    );
    axe.assert_accessible(&browser, "the form page");

    browser.goto(&format!("{base}/broken")).unwrap();
    let violations = axe.check(&browser).unwrap();
    let ids: Vec<&str> = violations.iter().map(|v| v.id.as_str()).collect();
    assert!(ids.contains(&"image-alt"), "{ids:?}");
    assert!(ids.contains(&"label"), "{ids:?}");
    let image = violations.iter().find(|v| v.id == "image-alt").unwrap();
    assert_eq!(image.impact.as_deref(), Some("critical"));
    assert_eq!(image.nodes[0].target, ["#badge"]);
    let message = format_violations("the broken page", &violations);
    assert!(message.contains("image-alt [critical]"), "{message}");
    assert!(message.contains("at #badge"), "{message}");
    assert!(message.contains("at #nameless"), "{message}");

    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        axe.assert_accessible(&browser, "the broken page")
    }));
    assert!(caught.is_err(), "assert_accessible passed a broken page");
}

/// The broker answers on HTTPS with a certificate from its own CA; the
/// browser takes it (`acceptInsecureCerts`) as the console's tests need.
#[test]
fn the_browser_loads_a_page_from_the_brokers_https_listener() {
    let Some(browser) = Browser::for_test() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = lanyard_e2e::BrokerProcess::start(&dir.path().join("data"), &[], &[]);
    assert!(broker.api.starts_with("https://"), "{}", broker.api);
    browser.goto(&format!("{}/healthz", broker.api)).unwrap();
    let url = browser.current_url().unwrap();
    assert_eq!(url, format!("{}/healthz", broker.api));
    let body = browser
        .execute("return document.body.innerText;", &[])
        .unwrap();
    assert_eq!(body.as_str().map(str::trim), Some("ok"), "{body}");
}
