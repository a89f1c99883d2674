//! The agent's local proxy with a real client (curl): an app reached by its
//! usual name over HTTP CONNECT, plain HTTP and SOCKS5 (the name resolved
//! through the broker's app list, never by DNS); the PAC file, made again
//! when an app's names change; each refusal with its reason; and a real
//! browser (headless Chromium) set up with nothing but the PAC file.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use lanyard_e2e::world::{World, READY};
use lanyard_e2e::{parse_up_line, run, Run};

/// curl, or `None` (and a line saying the test was skipped) without it.
fn curl() -> Option<&'static str> {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: curl is not installed (.ci/run installs it: apt-get install curl)");
    }
    found.then_some("curl")
}

/// curl with `args`, bounded in time, ignoring any proxy settings of the
/// environment.
fn curl_run(args: &[&str]) -> Run {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    run(cmd, None)
}

/// An HTTP server on 127.0.0.1 that answers each request with what it was
/// asked: the request line, then the headers, lowercased.
fn reporting_http_server() -> u16 {
    reporting_http_server_saying("hello from hr")
}

/// As [`reporting_http_server`], its answers starting with `greeting`.
fn reporting_http_server_saying(greeting: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                let body = format!("{greeting}\n{head}");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn add_app(w: &World, name: &str, port: u16, host: &str, group: &str) {
    let target = format!("127.0.0.1:{port}");
    w.broker
        .lanyard(
            &[
                "apps",
                "add",
                name,
                "--target",
                &target,
                "--host",
                host,
                "--allow-group",
                group,
            ],
            None,
            None,
        )
        .ok();
}

/// The PAC file, fetched directly.
fn pac(url: &str) -> String {
    curl_run(&["--noproxy", "*", url]).ok().stdout
}

#[test]
fn curl_reaches_an_app_by_name_through_the_proxy_and_each_refusal_says_why() {
    let Some(_) = curl() else { return };
    let w = World::new();
    w.person("a.patel", "hr");
    let hr = reporting_http_server();
    let payroll = reporting_http_server();
    let dead = dead_port();
    add_app(&w, "hr-web", hr, "hr.council.internal", "hr");
    add_app(
        &w,
        "payroll",
        payroll,
        "payroll.council.internal",
        "housing",
    );
    add_app(&w, "dead", dead, "dead.council.internal", "hr");
    let agent = w.agent("laptop", "a.patel", None);
    let mut up = agent.up(&["--proxy", "127.0.0.1:0"]);
    let (forwards, proxy) = parse_up_line(&up.wait_ready_line(READY));
    let (port, pac_url) = proxy.expect("the up line names the proxy and its PAC file");
    assert_eq!(pac_url, format!("http://127.0.0.1:{port}/proxy.pac"));
    assert!(forwards.contains_key("hr-web"), "{forwards:?}");
    let proxy = format!("127.0.0.1:{port}");
    let http_proxy = format!("http://{proxy}");

    let status = agent.run(&["status", "--json"], None).ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["proxy"], proxy.as_str(), "{status}");
    assert_eq!(status["pac"], pac_url.as_str(), "{status}");

    let hr_url = format!("http://hr.council.internal:{hr}");
    // HTTP CONNECT.
    let got = curl_run(&[
        "--proxy",
        &http_proxy,
        "--proxytunnel",
        &format!("{hr_url}/over-connect"),
    ])
    .ok()
    .stdout;
    assert!(
        got.starts_with("hello from hr\nget /over-connect http/1.1"),
        "{got}"
    );
    // Plain HTTP: the request goes to the app in origin-form, with the name
    // the client used, and the proxy's own headers gone.
    let got = curl_run(&[
        "--proxy",
        &http_proxy,
        "-H",
        "Proxy-Authorization: Basic c2VjcmV0",
        &format!("{hr_url}/plain?q=1"),
    ])
    .ok()
    .stdout;
    assert!(
        got.starts_with("hello from hr\nget /plain?q=1 http/1.1"),
        "{got}"
    );
    assert!(
        got.contains(&format!("host: hr.council.internal:{hr}")),
        "{got}"
    );
    assert!(got.contains("connection: close"), "{got}");
    assert!(!got.contains("proxy-"), "{got}");
    // SOCKS5, the name resolved by the proxy (from the apps), not by DNS.
    let got = curl_run(&["--socks5-hostname", &proxy, &format!("{hr_url}/over-socks")])
        .ok()
        .stdout;
    assert!(
        got.starts_with("hello from hr\nget /over-socks http/1.1"),
        "{got}"
    );
    // SOCKS5 with an IPv4 address: the app's target itself.
    let got = curl_run(&["--socks5", &proxy, &format!("http://127.0.0.1:{hr}/by-ip")])
        .ok()
        .stdout;
    assert!(
        got.starts_with("hello from hr\nget /by-ip http/1.1"),
        "{got}"
    );

    // The PAC file sends exactly the apps' names to the proxy.
    let before = pac(&pac_url);
    assert!(before.contains("\"hr.council.internal\": true"), "{before}");
    assert!(
        before.contains("\"dead.council.internal\": true"),
        "{before}"
    );
    assert!(
        before.contains(&format!("return \"PROXY {proxy}\";")),
        "{before}"
    );
    assert!(before.contains("return \"DIRECT\";"), "{before}");
    assert!(
        !before.contains("payroll"),
        "not this person's app: {before}"
    );
    assert!(!before.contains("people.council.internal"), "{before}");
    // A name added to the app: the PAC file follows (AppsChanged), and
    // the name works.
    w.broker
        .lanyard(
            &[
                "apps",
                "set",
                "hr-web",
                "--host",
                "hr.council.internal",
                "--host",
                "people.council.internal",
            ],
            None,
            None,
        )
        .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = pac(&pac_url);
        if now.contains("people.council.internal") || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        after.contains("\"people.council.internal\": true"),
        "{after}"
    );
    assert!(after.contains("\"hr.council.internal\": true"), "{after}");
    assert!(!after.contains("payroll"), "{after}");
    let got = curl_run(&[
        "--proxy",
        &http_proxy,
        &format!("http://PEOPLE.council.internal:{hr}/new-name"),
    ])
    .ok()
    .stdout;
    assert!(
        got.starts_with("hello from hr\nget /new-name http/1.1"),
        "{got}"
    );

    // Refusals, each with its reason. An app not open to this person: the
    // agent does not know its names.
    let refused = |args: &[&str]| {
        let mut all = vec!["--write-out", "\n%{http_code}"];
        all.extend_from_slice(args);
        curl_run(&all)
    };
    let payroll_url = format!("http://payroll.council.internal:{payroll}/");
    let out = refused(&["--proxy", &http_proxy, &payroll_url]);
    assert!(out.stdout.ends_with("\n403"), "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "lanyard: not a Lanyard app: payroll.council.internal:{payroll}"
        )),
        "{out:?}"
    );
    let out = refused(&["--proxy", &http_proxy, "--proxytunnel", &payroll_url]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("403"), "{out:?}");
    let out = refused(&["--socks5-hostname", &proxy, &payroll_url]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("(2)"),
        "SOCKS: not allowed by the rules: {out:?}"
    );
    // A name not in the list at all: refused at once, never looked up or
    // connected to.
    let out = refused(&["--proxy", &http_proxy, "http://example.com/"]);
    assert!(out.stdout.ends_with("\n403"), "{out:?}");
    assert!(
        out.stdout
            .contains("lanyard: not a Lanyard app: example.com:80"),
        "{out:?}"
    );
    // An app's name on another port than its target's.
    let out = refused(&["--proxy", &http_proxy, "http://hr.council.internal:1/"]);
    assert!(out.stdout.ends_with("\n403"), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("hr.council.internal is app hr-web, on port {hr}")),
        "{out:?}"
    );
    // The broker refuses: the app is not answering behind it.
    let dead_url = format!("http://dead.council.internal:{dead}/");
    let out = refused(&["--proxy", &http_proxy, &dead_url]);
    assert!(out.stdout.ends_with("\n502"), "{out:?}");
    assert!(
        out.stdout
            .contains("lanyard: dead: dead is not answering at the broker"),
        "{out:?}"
    );
    let out = refused(&["--proxy", &http_proxy, "--proxytunnel", &dead_url]);
    assert!(out.stderr.contains("502"), "{out:?}");
    let out = refused(&["--socks5-hostname", &proxy, &dead_url]);
    assert!(
        out.stderr.contains("(5)"),
        "SOCKS: connection refused: {out:?}"
    );
    assert!(
        up.wait_log("dead: refused: dead is not answering at the broker", READY),
        "the agent says why too: {}",
        up.log()
    );
    // A request to the proxy itself for anything but the PAC file.
    let out = refused(&["--noproxy", "*", &format!("http://{proxy}/other")]);
    assert!(out.stdout.ends_with("\n404"), "{out:?}");
}

#[test]
fn a_bad_client_gets_a_clear_answer_and_the_proxy_goes_on() {
    let Some(_) = curl() else { return };
    let w = World::new();
    w.person("a.patel", "hr");
    let hr = reporting_http_server();
    add_app(&w, "hr-web", hr, "hr.council.internal", "hr");
    let agent = w.agent("laptop", "a.patel", None);
    let mut up = agent.up(&["--proxy", "127.0.0.1:0"]);
    let (_, proxy) = parse_up_line(&up.wait_ready_line(READY));
    let port = proxy.unwrap().0;
    let send = |bytes: &[u8]| {
        use std::io::Read;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        conn.write_all(bytes).unwrap();
        let mut back = Vec::new();
        let _ = conn.read_to_end(&mut back);
        back
    };
    // An endless head is cut off at its limit.
    let huge = format!(
        "GET http://hr.council.internal:{hr}/ HTTP/1.1\r\nX: {}",
        "a".repeat(20_000)
    );
    assert!(send(huge.as_bytes()).starts_with(b"HTTP/1.1 431"));
    assert!(send(b"NOT HTTP AT ALL\r\n\r\n").starts_with(b"HTTP/1.1 400"));
    let https = send(b"GET https://hr.council.internal/ HTTP/1.1\r\n\r\n");
    assert!(
        https.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&https)
    );
    // SOCKS: no acceptable method; a command other than CONNECT.
    assert_eq!(send(&[5, 1, 2]), [5, 0xff]);
    let bind = [5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80];
    assert_eq!(send(&bind), &[5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    // A client that says nothing is closed after the handshake timeout,
    // and meanwhile others are served.
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let got = curl_run(&[
        "--proxy",
        &format!("http://127.0.0.1:{port}"),
        &format!("http://hr.council.internal:{hr}/still-here"),
    ])
    .ok()
    .stdout;
    assert!(got.contains("get /still-here"), "{got}");
    let started = Instant::now();
    let closed = lanyard_e2e::world::closed_at(silent, Duration::from_secs(20));
    let after = lanyard_e2e::world::ended_after(closed, started, "a silent client");
    assert!(after <= Duration::from_secs(11), "{after:?}");
}

/// Debian's Chromium, or `None` (and a line saying the test was skipped)
/// without it.
fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED: chromium is not installed (.ci/run installs it: apt-get install chromium)"
        );
    }
    found.then_some("chromium")
}

/// Headless Chromium, its only proxy setting the PAC file at `pac_url`,
/// loads `url` and prints the page's DOM. `extra` are more switches.
fn chromium_dump_dom(profile: &std::path::Path, pac_url: &str, extra: &[&str], url: &str) -> Run {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", "60", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-features=HttpsUpgrades",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--proxy-pac-url={pac_url}"))
        .args(extra)
        .args(["--dump-dom", url])
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("no_proxy");
    run(cmd, None)
}

#[test]
fn chromium_with_the_pac_file_reaches_an_app_by_name_and_goes_direct_elsewhere() {
    let Some(_) = chromium() else { return };
    let w = World::new();
    w.person("a.patel", "hr");
    let hr = reporting_http_server();
    add_app(&w, "hr-web", hr, "hr.council.internal", "hr");
    // A page that is no app: the broker's list does not have it, so the
    // proxy would refuse it (403, "not a Lanyard app").
    let direct = reporting_http_server_saying("hello direct");
    let agent = w.agent("laptop", "a.patel", None);
    let mut up = agent.up(&["--proxy", "127.0.0.1:0"]);
    let (_, proxy) = parse_up_line(&up.wait_ready_line(READY));
    let (_, pac_url) = proxy.unwrap();
    let profile = tempfile::tempdir_in(w.tmp.path()).unwrap();

    // The app by its name: no DNS knows hr.council.internal, so the page
    // can only come through the agent's proxy, which the PAC file names.
    let hr_url = format!("http://hr.council.internal:{hr}/from-chromium");
    let got = chromium_dump_dom(profile.path(), &pac_url, &[], &hr_url);
    assert!(
        got.stdout.contains("hello from hr") && got.stdout.contains("get /from-chromium http/1.1"),
        "{got:?}"
    );
    assert!(
        got.stdout
            .contains(&format!("host: hr.council.internal:{hr}")),
        "{got:?}"
    );
    let streams = w.broker.metric("lanyard_streams_allowed_total");
    assert!(streams.is_some_and(|n| n >= 1.0), "{streams:?}");

    // A name not in the PAC file's list goes DIRECT. Chromium never asks a
    // PAC file about loopback names and addresses (it always connects to
    // them directly), so the page has a name of its own, which the
    // browser's resolver (not the proxy) maps to 127.0.0.1.
    let direct_url = format!("http://direct.test:{direct}/not-an-app");
    let got = chromium_dump_dom(
        profile.path(),
        &pac_url,
        &["--host-resolver-rules=MAP direct.test 127.0.0.1"],
        &direct_url,
    );
    assert!(
        got.stdout.contains("hello direct") && got.stdout.contains("get /not-an-app http/1.1"),
        "{got:?}"
    );
    assert!(!got.stdout.contains("not a Lanyard app"), "{got:?}");
    // The broker carried the app's page and nothing more.
    assert_eq!(
        w.broker.metric("lanyard_streams_allowed_total"),
        streams,
        "the direct page made no tunnel stream"
    );
}
