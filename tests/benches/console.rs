//! The console's page-load time with a council-sized store: 10,000
//! laptops (1,000 of them held), 1,000 staff, and an open request queue.
//!
//! ```sh
//! cargo bench -p lanyard-e2e --bench console
//! LANYARD_CONSOLE_LAPTOPS=20000 LANYARD_CONSOLE_LOADS=200 cargo bench -p lanyard-e2e --bench console
//! ```
//!
//! A release broker on 127.0.0.1 (SQLite); an admin signs in through the
//! sign-in form; each page is then loaded `LANYARD_CONSOLE_LOADS` times
//! (default 100) one after another over a fresh HTTPS connection each
//! (as a browser opening a page does), after 3 loads to warm up. One row
//! per page: its status, size, and the time from request to the last
//! byte, p50 and p99.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use lanyard_e2e::world::PASSWORD;
use lanyard_e2e::BrokerProcess;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One HTTPS request: status, headers (lowercased names) and body.
fn https(
    broker: &BrokerProcess,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let tcp = std::net::TcpStream::connect(broker.api_addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut tls = broker.tls_over(tcp);
    let body = form.unwrap_or("");
    let kind = if form.is_some() {
        "Content-Type: application/x-www-form-urlencoded\r\n"
    } else {
        ""
    };
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: lanyard\r\n{cookie}{kind}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn cookie_from(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = body.find(&marker).expect("the hidden field") + marker.len();
    body[at..].split('"').next().unwrap_or_default().to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let laptops = env_usize("LANYARD_CONSOLE_LAPTOPS", 10_000);
    let loads = env_usize("LANYARD_CONSOLE_LOADS", 100).max(1);
    let held = (laptops / 10).min(1_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&tmp.path().join("data"), &[], &[("LANYARD_LOG", "warn")]);
    eprintln!("console bench: {laptops} laptops, {held} staff holding one, {loads} loads a page");
    let started = Instant::now();
    broker.lanyard(&["groups", "add", "hr"], None, None).ok();
    let mut csv = String::from("asset_tag,serial,model,status\n");
    for i in 0..laptops {
        csv.push_str(&format!(
            "LT-{i:05},SN{i:07},Latitude 54{:02},in-stock\n",
            i % 40
        ));
    }
    let file = tmp.path().join("laptops.csv");
    std::fs::write(&file, csv).expect("write csv");
    broker
        .lanyard(
            &["devices", "import", file.to_str().expect("path")],
            None,
            None,
        )
        .ok();
    let mut staff = String::from("username,name,email,department,priority,groups\n");
    for i in 0..held + 200 {
        staff.push_str(&format!(
            "p.{i:05},Person {i},,Dept {},{},hr\n",
            i % 12,
            1 + i % 3
        ));
    }
    let file = tmp.path().join("staff.csv");
    std::fs::write(&file, staff).expect("write csv");
    broker
        .lanyard(
            &["staff", "import", file.to_str().expect("path")],
            None,
            None,
        )
        .ok();
    for i in 0..held + 200 {
        broker
            .lanyard(&["requests", "add", &format!("p.{i:05}")], None, None)
            .ok();
        if i + 1 == held {
            broker.lanyard(&["requests", "fulfil"], None, None).ok();
        }
    }
    broker
        .lanyard(
            &[
                "staff",
                "add",
                "c.admin",
                "--name",
                "Console Admin",
                "--role",
                "admin",
                "--password-stdin",
            ],
            None,
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    eprintln!("console bench: store filled in {:.0?}", started.elapsed());

    // Sign in through the form, as a browser would.
    let (_, headers, body) = https(&broker, "GET", "/login", "", None);
    let login_cookie = cookie_from(&headers, "__Host-lanyard-login");
    let csrf = hidden(&String::from_utf8_lossy(&body), "csrf");
    let (status, headers, _) = https(
        &broker,
        "POST",
        "/login",
        &login_cookie,
        Some(&format!(
            "csrf={csrf}&next=%2F&username=c.admin&password={PASSWORD}&totp="
        )),
    );
    assert_eq!(status, 303, "sign-in");
    let session = cookie_from(&headers, "__Host-lanyard");
    assert!(!session.is_empty(), "a session cookie");

    let pages = [
        "/",
        "/laptops",
        "/laptops?page=150",
        "/laptops?q=lt-0500",
        "/laptops?status=allocated",
        "/laptops/LT-00042",
        "/requests",
        "/requests/fulfil",
        "/staff",
        "/audit",
        "/me",
    ];
    println!(
        "\n{:<28} {:>6} {:>9} {:>10} {:>10}",
        "page", "status", "KiB", "p50 ms", "p99 ms"
    );
    for path in pages {
        for _ in 0..3 {
            https(&broker, "GET", path, &session, None);
        }
        let mut times = Vec::with_capacity(loads);
        let mut last = (0, 0);
        for _ in 0..loads {
            let t = Instant::now();
            let (status, _, body) = https(&broker, "GET", path, &session, None);
            times.push(t.elapsed());
            last = (status, body.len());
        }
        times.sort();
        println!(
            "{:<28} {:>6} {:>9.1} {:>10.2} {:>10.2}",
            path,
            last.0,
            last.1 as f64 / 1024.0,
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0
        );
    }
}
