//! The one test world the end-to-end tests share: a broker process on
//! 127.0.0.1 with the groups `hr` and `housing`, four apps (`echo`, `web`,
//! `hr-only-laptops`, `housing-app`) in front of an echo server and a small
//! web server, and the laptop `LT-1`; people and agents are added per test.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::{echo_server, http_server, Agent, BrokerProcess};

pub const PASSWORD: &str = "Correct-Horse-Battery-9";
pub const READY: Duration = Duration::from_secs(30);

pub struct World {
    pub tmp: tempfile::TempDir,
    pub broker: BrokerProcess,
    pub echo_port: u16,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// A broker with groups `hr` and `housing`, apps `echo` (hr, any device),
    /// `web` (hr, any), `hr-only-laptops` (hr, managed devices) and
    /// `housing-app` (housing), and a laptop LT-1.
    pub fn new() -> Self {
        Self::with(&[], &[])
    }

    pub fn with(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::in_dir(tempfile::tempdir().unwrap(), extra, env)
    }

    /// As [`with`](Self::with), in `tmp` (the broker's data dir is
    /// `tmp/data`, which the test may have prepared).
    pub fn in_dir(tmp: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let broker = BrokerProcess::start(&tmp.path().join("data"), extra, env);
        let echo = echo_server();
        let web = http_server("hello from the intranet");
        for g in ["hr", "housing"] {
            broker.lanyard(&["groups", "add", g], None, None).ok();
        }
        let echo_target = echo.to_string();
        let web_target = web.to_string();
        for (name, target, group, kind) in [
            ("echo", echo_target.as_str(), "hr", "any"),
            ("web", web_target.as_str(), "hr", "any"),
            ("hr-only-laptops", echo_target.as_str(), "hr", "managed"),
            ("housing-app", echo_target.as_str(), "housing", "any"),
        ] {
            broker
                .lanyard(
                    &[
                        "apps",
                        "add",
                        name,
                        "--target",
                        target,
                        "--allow-group",
                        group,
                        "--device-kind",
                        kind,
                    ],
                    None,
                    None,
                )
                .ok();
        }
        broker
            .lanyard(
                &["devices", "add", "LT-1", "--serial", "S1", "--model", "T14"],
                None,
                None,
            )
            .ok();
        World {
            broker,
            echo_port: echo.port(),
            tmp,
        }
    }

    pub fn person(&self, username: &str, group: &str) {
        self.broker.add_person(username, group, PASSWORD);
    }

    /// A person with `role` (admin, ict, viewer, staff), in `group` when
    /// given, who signs in with [`PASSWORD`].
    pub fn person_with_role(&self, username: &str, role: &str, group: Option<&str>) {
        let mut args = vec![
            "staff",
            "add",
            username,
            "--name",
            username,
            "--role",
            role,
            "--password-stdin",
        ];
        if let Some(g) = group {
            args.extend(["--group", g]);
        }
        self.broker
            .lanyard(&args, None, Some(&format!("{PASSWORD}\n")))
            .ok();
    }

    /// An API token for `username` from `lanyard login`. An admin's
    /// password sign-in ends the bootstrap token: set up with the CLI first.
    pub fn token_of(&self, username: &str) -> String {
        self.broker
            .lanyard(
                &["login", username, "--password-stdin"],
                None,
                Some(&format!("{PASSWORD}\n")),
            )
            .ok()
            .stdout
            .trim()
            .to_owned()
    }

    pub fn code(&self, args: &[&str]) -> String {
        let mut all = vec!["enroll-code", "create"];
        all.extend_from_slice(args);
        self.broker
            .lanyard(&all, None, None)
            .ok()
            .stdout
            .trim()
            .to_owned()
    }

    /// An agent enrolled (personal device of `username`, or laptop `tag`)
    /// and signed in as `username`.
    /// An agent enrolled and signed in as `username`: on council laptop
    /// `laptop`, allocated to them first, or on their own device.
    pub fn agent(&self, name: &str, username: &str, laptop: Option<&str>) -> Agent {
        let agent = Agent::new(self.tmp.path().join(name));
        let code = match laptop {
            Some(tag) => {
                self.broker
                    .lanyard(&["devices", "assign", tag, "--to", username], None, None)
                    .ok();
                self.code(&["--device", tag])
            }
            None => self.code(&["--personal", username]),
        };
        agent.enrol_and_login(&code, username, PASSWORD);
        agent
    }
}

/// One HTTPS request to the API; the status and the body.
pub fn api(w: &World, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    api_with(w, method, path, token, None)
}

/// As [`api`], with a JSON body.
pub fn api_with(
    w: &World,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&serde_json::Value>,
) -> (u16, String) {
    let tcp = TcpStream::connect(w.broker.api_addr()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut tls = w.broker.tls_over(tcp);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = json.map(serde_json::Value::to_string).unwrap_or_default();
    let kind = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: lanyard\r\n{auth}{kind}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            unchunk(body)
        } else {
            body.to_owned()
        },
    )
}

/// A console answer: its status, where it sends the browser, the cookies
/// it sets and its body.
#[derive(Debug)]
pub struct WebResponse {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// A small browser for the console: it keeps the cookies it is given and
/// posts forms (`application/x-www-form-urlencoded`) over HTTPS.
pub struct Web<'a> {
    w: &'a World,
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl<'a> Web<'a> {
    pub fn new(w: &'a World) -> Self {
        Web {
            w,
            cookies: std::collections::BTreeMap::new(),
        }
    }

    /// Signed in through `GET /login` (its CSRF cookie and hidden field)
    /// and `POST /login`.
    pub fn signed_in(w: &'a World, username: &str, password: &str) -> Self {
        let mut web = Web::new(w);
        let form = web.get("/login");
        assert_eq!(form.status, 200, "{form:?}");
        let csrf = csrf_of(&form.body);
        let r = web.post_raw(
            "/login",
            &[
                ("csrf", &csrf),
                ("next", "/"),
                ("username", username),
                ("password", password),
            ],
        );
        assert_eq!(r.status, 303, "signing in as {username}: {r:?}");
        web
    }

    pub fn get(&mut self, path: &str) -> WebResponse {
        self.request("GET", path, None)
    }

    /// Posts `fields` as they are (add the CSRF token yourself, or not).
    pub fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> WebResponse {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.request("POST", path, Some(&body))
    }

    /// Posts `fields` with the CSRF token of the page at `from`.
    pub fn post(&mut self, from: &str, path: &str, fields: &[(&str, &str)]) -> WebResponse {
        let page = self.get(from);
        assert_eq!(page.status, 200, "{from}: {page:?}");
        let csrf = csrf_of(&page.body);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all)
    }

    fn request(&mut self, method: &str, path: &str, form: Option<&str>) -> WebResponse {
        let tcp = TcpStream::connect(self.w.broker.api_addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut tls = self.w.broker.tls_over(tcp);
        let cookie = if self.cookies.is_empty() {
            String::new()
        } else {
            format!(
                "Cookie: {}\r\n",
                self.cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let body = form.unwrap_or("");
        let kind = if form.is_some() {
            "Content-Type: application/x-www-form-urlencoded\r\n"
        } else {
            ""
        };
        write!(
            tls,
            "{method} {path} HTTP/1.1\r\nHost: lanyard\r\n{cookie}{kind}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
        let mut location = None;
        let mut set_cookies = Vec::new();
        let mut chunked = false;
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "location" => location = Some(value.to_owned()),
                "set-cookie" => {
                    set_cookies.push(value.to_owned());
                    let pair = value.split(';').next().unwrap_or("");
                    if let Some((k, v)) = pair.split_once('=') {
                        if v.is_empty() {
                            self.cookies.remove(k);
                        } else {
                            self.cookies.insert(k.to_owned(), v.to_owned());
                        }
                    }
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        WebResponse {
            status,
            location,
            set_cookies,
            body: if chunked {
                unchunk(rest)
            } else {
                rest.to_owned()
            },
        }
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in the page: {page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A form value percent-encoded (space as `+`).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A chunked body's data.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Reads from a live tunnel connection until it ends: the instant it did,
/// or `None` if it was still open after `limit` (a read timeout is not an
/// end).
pub fn closed_at(mut conn: TcpStream, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        conn.set_read_timeout(Some(left)).unwrap();
        match conn.read(&mut buf) {
            Ok(0) => return Some(Instant::now()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Some(Instant::now()),
        }
    }
}

/// How long after `from` a connection that [`closed_at`] watched ended;
/// fails the test if it never did.
pub fn ended_after(closed: Option<Instant>, from: Instant, what: &str) -> Duration {
    let at = closed.unwrap_or_else(|| panic!("{what}: the live tunnel never closed"));
    at.saturating_duration_since(from)
}

/// A connection through the tunnel that has shown it works.
pub fn live_connection(port: u16) -> TcpStream {
    use std::io::Write;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_timeout_is_not_an_end_but_a_close_is() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let conn = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (held, _) = listener.accept().unwrap();
        let quiet = conn.try_clone().unwrap();
        assert!(closed_at(quiet, Duration::from_millis(300)).is_none());
        drop(held);
        let at = closed_at(conn, Duration::from_secs(5));
        assert!(at.is_some(), "a closed connection was not seen to end");
    }
}
