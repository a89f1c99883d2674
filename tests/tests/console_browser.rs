//! The web console in a real browser (headless Chromium over WebDriver):
//! signing in, the inventory flow, a member of staff's own page, refusals
//! (a post without its CSRF token, a viewer's action), with axe-core's WCAG
//! 2.2 A/AA check on every page and screenshots at 1280 and 320 px under
//! the target dir. Skipped, saying so, without Chromium, chromedriver or
//! axe-core (.ci/run installs them).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use serde_json::{json, Value};

use lanyard_e2e::axe::Axe;
use lanyard_e2e::screenshots::screenshot_both_widths;
use lanyard_e2e::webdriver::Browser;
use lanyard_e2e::world::{World, PASSWORD};

/// The page is accessible (axe: no WCAG 2.2 A/AA violation), reflows at
/// 320 px without a page-wide sideways scroll, and is screenshotted.
fn look(b: &Browser, axe: &Axe, name: &str) {
    axe.assert_accessible(b, name);
    b.set_window_size(320, 640).unwrap();
    let wide = b
        .execute("return document.documentElement.scrollWidth;", &[])
        .unwrap();
    if wide.as_u64().unwrap() > 320 {
        // Name what sticks out, innermost first.
        let culprits = b
            .execute(
                "return Array.from(document.querySelectorAll('body *'))\
                   .filter(e => e.getBoundingClientRect().right > 321)\
                   .filter(e => !Array.from(e.children).some(c => c.getBoundingClientRect().right > 321))\
                   .slice(0, 5).map(e => e.outerHTML.slice(0, 160));",
                &[],
            )
            .unwrap();
        panic!("{name}: the page is {wide} px wide at 320 px; what sticks out: {culprits}");
    }
    axe.assert_accessible(b, &format!("{name} at 320 px"));
    b.set_window_size(1280, 800).unwrap();
    screenshot_both_widths(b, name).unwrap();
}

fn sign_in(b: &Browser, base: &str, username: &str) {
    b.goto(&format!("{base}/login")).unwrap();
    b.fill("#username", username).unwrap();
    b.fill("#password", PASSWORD).unwrap();
    b.submit_form("form[action='/login']").unwrap();
    b.wait_for_url("signed in", |u| !u.contains("/login"))
        .unwrap();
}

fn sign_out(b: &Browser) {
    b.submit_form("form.signout").unwrap();
    b.wait_for_url("signed out", |u| u.ends_with("/login"))
        .unwrap();
}

/// A form POST from the page itself (same origin, the session's cookie
/// sent): its status.
fn post_from_page(b: &Browser, path: &str, body: &str) -> u64 {
    b.execute_async(
        "const [path, body, done] = arguments;\
         fetch(path, {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body})\
           .then(r => done(r.status)).catch(e => done(String(e)));",
        &[json!(path), json!(body)],
    )
    .unwrap()
    .as_u64()
    .unwrap_or(0)
}

fn csrf_on_page(b: &Browser) -> String {
    b.execute(
        "return document.querySelector('input[name=csrf]').value;",
        &[],
    )
    .unwrap()
    .as_str()
    .unwrap()
    .to_owned()
}

fn laptop_json(w: &World, tag: &str) -> Value {
    serde_json::from_str(
        &w.broker
            .lanyard(&["devices", "show", tag, "--json"], None, None)
            .ok()
            .stdout,
    )
    .unwrap()
}

#[test]
fn the_inventory_tour_in_the_console() {
    let Some(axe) = Axe::for_test() else { return };
    let Some(b) = Browser::for_test() else { return };
    let w = World::new();
    w.person_with_role("c.viewer", "viewer", None);
    w.person_with_role("s.staff", "staff", Some("hr"));
    w.person_with_role("c.ict", "ict", None);
    let base = w.broker.api.clone();

    // Sign-in: the page, a wrong password named beside the field, then in.
    b.goto(&format!("{base}/laptops")).unwrap();
    assert!(b.current_url().unwrap().contains("/login?next=%2Flaptops"));
    look(&b, &axe, "login");
    b.fill("#username", "c.ict").unwrap();
    b.fill("#password", "not-the-password").unwrap();
    b.submit_form("form[action='/login']").unwrap();
    let summary = b.text_of(".error-summary").unwrap();
    assert!(summary.contains("wrong username or password"), "{summary}");
    look(&b, &axe, "login-error");
    b.fill("#password", PASSWORD).unwrap();
    b.submit_form("form[action='/login']").unwrap();
    b.wait_for_url("the laptops page after sign-in", |u| {
        u.ends_with("/laptops")
    })
    .unwrap();
    let cookie = b
        .cookie("__Host-lanyard")
        .unwrap()
        .expect("a session cookie");
    assert!(cookie.secure && cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"));
    look(&b, &axe, "laptops");

    // Add a laptop: a bad tag is named beside its field; a good one lands.
    b.fill("#asset_tag", "bad tag!").unwrap();
    b.fill("#serial", "S2").unwrap();
    b.fill("#model", "T14").unwrap();
    b.submit_form("form[action='/laptops'][method='post']")
        .unwrap();
    if b.find("#asset_tag-error").is_err() {
        panic!("no error beside the tag: {}", b.page_source().unwrap());
    }
    look(&b, &axe, "laptops-add-error");
    b.fill("#asset_tag", "LT-2").unwrap();
    b.submit_form("form[action='/laptops'][method='post']")
        .unwrap();
    b.wait_for_url("the new laptop", |u| u.contains("/laptops/LT-2"))
        .unwrap();
    assert!(b.text_of(".notice").unwrap().contains("Laptop added"));
    // Literal search: '%' matches nothing, the tag matches.
    b.goto(&format!("{base}/laptops?q=%25")).unwrap();
    assert!(b.page_source().unwrap().contains("0 devices found"));
    b.goto(&format!("{base}/laptops?q=lt-2")).unwrap();
    assert!(b.page_source().unwrap().contains("1 device found"));

    // Import: a file with two bad rows is refused whole, each named by
    // line; the good file lands.
    b.goto(&format!("{base}/laptops")).unwrap();
    b.fill(
        "#csv",
        "asset_tag,serial,model,status\nLT-10,S10,T14,in-stock\nbad tag,S11,T14,in-stock\nLT-12,S12,T14,sideways\n",
    )
    .unwrap();
    b.submit_form("form[action='/laptops/import']").unwrap();
    let refused = b.text_of("#csv-error").unwrap();
    assert!(
        refused.contains("line 3")
            && refused.contains("line 4")
            && refused.contains("nothing was written"),
        "{refused}"
    );
    look(&b, &axe, "laptops-import-error");
    let nothing = w.broker.lanyard(&["devices", "show", "LT-10"], None, None);
    assert_ne!(nothing.code, 0, "a refused import wrote LT-10");
    b.fill(
        "#csv",
        "asset_tag,serial,model,status\nLT-10,S10,T14,in-stock\nLT-11,S11,T14,in-repair\n",
    )
    .unwrap();
    b.submit_form("form[action='/laptops/import']").unwrap();
    b.wait_for_url("imported", |u| u.contains("done=imported"))
        .unwrap();
    assert_eq!(laptop_json(&w, "LT-11")["status"], "in-repair");

    // The queue: a request, its place, a preview, then the allocation.
    b.goto(&format!("{base}/requests")).unwrap();
    b.fill("#username", "s.staff").unwrap();
    b.fill("#reason", "new starter").unwrap();
    b.submit_form("form[action='/requests'][method='post']")
        .unwrap();
    b.wait_for_url("the queue", |u| u.contains("done=added"))
        .unwrap();
    look(&b, &axe, "requests");
    b.click_css("a[href='/requests/fulfil']").unwrap();
    let preview = b.text_of("main").unwrap();
    assert!(
        preview.contains("Nothing has been allocated yet"),
        "{preview}"
    );
    assert!(
        preview.contains("s.staff") && preview.contains("LT-1"),
        "{preview}"
    );
    look(&b, &axe, "requests-fulfil");
    assert_eq!(laptop_json(&w, "LT-1")["status"], "in-stock");
    b.submit_form("form[action='/requests/fulfil']").unwrap();
    b.wait_for_url("the queue again", |u| u.contains("done=fulfilled"))
        .unwrap();
    assert!(b.text_of(".notice").unwrap().contains("1 laptop allocated"));
    assert_eq!(laptop_json(&w, "LT-1")["holder"], "s.staff");

    // Assign LT-2 by hand, mark it in repair; its history says so.
    b.goto(&format!("{base}/laptops/LT-2")).unwrap();
    b.fill("#to", "c.viewer").unwrap();
    b.submit_form("form[action='/laptops/LT-2/assign']")
        .unwrap();
    b.wait_for_url("assigned", |u| u.contains("done=assigned"))
        .unwrap();
    // Marking an allocated laptop in repair is refused beside the field:
    // it is returned first.
    b.execute(
        "document.getElementById('mark_status').value = 'in-repair';",
        &[],
    )
    .unwrap();
    b.submit_form("form[action='/laptops/LT-2/mark']").unwrap();
    b.find("#mark_status-error").unwrap();
    look(&b, &axe, "laptop-action-error");
    b.execute(
        "document.getElementById('return_status').value = 'in-repair';",
        &[],
    )
    .unwrap();
    b.fill("#return_note", "cracked screen").unwrap();
    b.submit_form("form[action='/laptops/LT-2/return']")
        .unwrap();
    b.wait_for_url("returned", |u| u.contains("done=returned"))
        .unwrap();
    let history = b.text_of("main").unwrap();
    assert!(
        history.contains("laptop.assign") && history.contains("cracked screen"),
        "{history}"
    );
    look(&b, &axe, "laptop");

    // Mark a laptop lost from its page: its history says who and why.
    b.goto(&format!("{base}/laptops/LT-11")).unwrap();
    b.execute(
        "document.getElementById('mark_status').value = 'lost';",
        &[],
    )
    .unwrap();
    b.fill("#mark_note", "left on a train").unwrap();
    b.submit_form("form[action='/laptops/LT-11/mark']").unwrap();
    b.wait_for_url("marked lost", |u| u.contains("done=marked"))
        .unwrap();
    assert_eq!(laptop_json(&w, "LT-11")["status"], "lost");
    let history = b.text_of("main").unwrap();
    assert!(
        history.contains("laptop.mark") && history.contains("left on a train"),
        "{history}"
    );

    // A post without the session's CSRF token changes nothing.
    assert_eq!(
        post_from_page(&b, "/laptops/LT-1/mark", "mark_status=lost"),
        403
    );
    assert_eq!(laptop_json(&w, "LT-1")["status"], "allocated");
    look(&b, &axe, "dashboard-before");
    b.goto(&format!("{base}/")).unwrap();
    assert!(b.try_find("#agents").unwrap().is_some());
    // The figures the page's script refreshes, as it fetches them (the
    // session's cookie, and the CSP's connect-src, let it).
    let live = b
        .execute_async(
            "const done = arguments[0];\
             fetch('/live.json').then(r => r.json()).then(j => done(j)).catch(e => done(String(e)));",
            &[],
        )
        .unwrap();
    assert_eq!(live["agents"], "0", "{live}");
    assert!(
        live["capacity"].as_str().unwrap().contains("% of"),
        "{live}"
    );
    look(&b, &axe, "dashboard");
    sign_out(&b);
    // The session is over: its cookie no longer opens a page.
    b.goto(&format!("{base}/laptops")).unwrap();
    assert!(b.current_url().unwrap().contains("/login"));

    // A viewer reads, and is refused an action even with a valid token.
    sign_in(&b, &base, "c.viewer");
    b.goto(&format!("{base}/laptops/LT-1")).unwrap();
    assert!(b
        .try_find("form[action='/laptops/LT-1/mark']")
        .unwrap()
        .is_none());
    let csrf = csrf_on_page(&b);
    assert_eq!(
        post_from_page(
            &b,
            "/laptops/LT-1/mark",
            &format!("csrf={csrf}&mark_status=lost")
        ),
        403
    );
    assert_eq!(laptop_json(&w, "LT-1")["status"], "allocated");
    sign_out(&b);

    // Staff: their own page; an enrolment code for their own device; their
    // laptop reported lost (revoked at once).
    sign_in(&b, &base, "s.staff");
    assert!(b.current_url().unwrap().ends_with("/me"));
    let mine = b.text_of("main").unwrap();
    assert!(mine.contains("LT-1"), "{mine}");
    look(&b, &axe, "me");
    b.submit_form("form[action='/me/enrol']").unwrap();
    let code = b.text_of(".code").unwrap();
    assert!(code.starts_with("lye"), "{code}");
    look(&b, &axe, "me-code");
    b.submit_form("form[action='/me/lost/LT-1']").unwrap();
    b.wait_for_url("reported lost", |u| u.contains("done=lost"))
        .unwrap();
    assert_eq!(laptop_json(&w, "LT-1")["status"], "lost");
    // Staff see only their own page.
    b.goto(&format!("{base}/laptops")).unwrap();
    assert!(b.title().unwrap().contains("You cannot do this"));
    look(&b, &axe, "forbidden");
    b.goto(&format!("{base}/no-such-page")).unwrap();
    assert!(b.title().unwrap().contains("Page not found"));
    look(&b, &axe, "not-found");
}

/// Every page of the people and operations areas, axe-checked at both
/// widths; and the leaver action from the console with a live tunnel: it
/// closes within a second.
#[test]
fn the_people_pages_and_the_leaver_action_in_the_console() {
    use lanyard_e2e::world::{closed_at, ended_after, live_connection, READY};
    use std::time::{Duration, Instant};

    let Some(axe) = Axe::for_test() else { return };
    let Some(b) = Browser::for_test() else { return };
    let w = World::new();
    w.person("l.leaver", "hr");
    let agent = w.agent("own-laptop", "l.leaver", None);
    w.broker
        .lanyard(
            &["devices", "assign", "LT-1", "--to", "l.leaver"],
            None,
            None,
        )
        .ok();
    w.person_with_role("c.admin", "admin", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let base = w.broker.api.clone();
    sign_in(&b, &base, "c.admin");

    for (path, name) in [
        ("/staff", "staff"),
        ("/staff/l.leaver", "person"),
        ("/groups", "groups"),
        ("/apps", "apps"),
        ("/sessions", "sessions"),
        ("/enrolment", "enrolment"),
        ("/audit", "audit"),
        ("/audit/verify", "audit-verify"),
    ] {
        b.goto(&format!("{base}{path}")).unwrap();
        look(&b, &axe, name);
    }
    let verified = b.text_of("#verify-result").unwrap();
    assert!(verified.starts_with("Intact"), "{verified}");
    // A code for the leaver's second device, shown once.
    b.goto(&format!("{base}/enrolment")).unwrap();
    b.execute("document.getElementById('kind').value = 'personal';", &[])
        .unwrap();
    b.fill("#for", "l.leaver").unwrap();
    b.submit_form("form[action='/enrolment'][method='post']")
        .unwrap();
    assert!(b.text_of("#code").unwrap().starts_with("lye"));
    look(&b, &axe, "enrolment-created");

    // The leaver action: confirmation, then one step; the tunnel closes.
    b.goto(&format!("{base}/staff/l.leaver/leave")).unwrap();
    look(&b, &axe, "leaver-confirm");
    let conn = live_connection(port);
    let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
    b.submit_form("form[action$='/leave']").unwrap();
    let closed_after = ended_after(waiter.join().unwrap(), Instant::now(), "leaver");
    assert!(
        closed_after < Duration::from_secs(1),
        "the tunnel stayed open {closed_after:?} after the console's leaver action; agent log:\n{}",
        up.log()
    );
    look(&b, &axe, "leaver-done");
    // (The admin's sign-in ended the bootstrap token: the admin reads.)
    let admin = w.token_of("c.admin");
    let (_, laptop) = lanyard_e2e::world::api(&w, "GET", "/api/v1/devices/LT-1", Some(&admin));
    let laptop: Value = serde_json::from_str(&laptop).unwrap();
    assert!(laptop["recall_since"].is_string(), "{laptop}");
    let (_, audit) =
        lanyard_e2e::world::api(&w, "GET", "/api/v1/audit?action=staff.leave", Some(&admin));
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit[0]["actor"], "c.admin", "{audit}");
}
