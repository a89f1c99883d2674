//! Helpers for the end-to-end tests: the real binaries, run as processes.

#![forbid(unsafe_code)]

pub mod axe;
pub mod help_check;
pub mod impair;
pub mod promql;
pub mod screenshots;
pub mod store_link;
pub mod trend;
pub mod webdriver;
pub mod world;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use lanyard_broker::testkit::TestStore;

/// The directory holding the workspace's binaries, built once per test run
/// (a no-op when they are fresh) with the same profile as this test.
/// `LANYARD_BIN_DIR` names a directory of binaries built earlier to use
/// instead, unbuilt: how a benchmark compares two builds in one sitting.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("LANYARD_BIN_DIR") {
            let dir = PathBuf::from(dir);
            for name in ["lanyard-broker", "lanyard-agent", "lanyard"] {
                assert!(
                    dir.join(name).is_file(),
                    "LANYARD_BIN_DIR={} holds no {name}",
                    dir.display()
                );
            }
            return dir;
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "lanyard-broker",
            "-p",
            "lanyard-cli",
            "-p",
            "lanyard-agent",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        // What cargo sets for this test (and not for a build from a shell)
        // is left out: ring's build script watches some of it, so passing
        // it on would rebuild ring and all above it on every test run, and
        // again at the next `cargo test`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_BIN_NAME",
                ]
                .contains(&name.as_ref())
            {
                cmd.env_remove(name.as_ref());
            }
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the binaries");
        assert!(status.success(), "building the binaries failed");
        dir
    })
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A `lanyard-broker serve` process, started and ready.
pub struct BrokerProcess {
    pub child: Child,
    pub api: String,
    pub quic: String,
    pub ca_fingerprint: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub ready_line: String,
}

impl BrokerProcess {
    /// Starts `lanyard-broker serve` on 127.0.0.1 port 0 and waits for the
    /// ready line (at most 60 s).
    pub fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_at(data_dir, "127.0.0.1:0", "127.0.0.1:0", extra, env)
    }

    /// As [`start`](Self::start), on the given addresses (to restart a
    /// broker where its agents expect it).
    pub fn start_at(
        data_dir: &Path,
        api: &str,
        quic: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_program(&bin("lanyard-broker"), data_dir, api, quic, extra, env)
    }

    /// As [`start_at`](Self::start_at), running `program` (an installed
    /// `lanyard-broker`, say) instead of the one this test run built.
    pub fn start_program(
        program: &Path,
        data_dir: &Path,
        api: &str,
        quic: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = Command::new(program);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api-listen", api, "--quic-listen", quic])
            .args(extra)
            .env_remove("LANYARD_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lanyard-broker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the broker never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no ready line; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let field = |key: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("ready line lacks {key}: {line}"))
                .to_owned()
        };
        BrokerProcess {
            api: field("api="),
            quic: field("quic="),
            ca_fingerprint: field("ca=sha256:"),
            ready_line: line.clone(),
            child,
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_owned()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_child(&mut self.child, limit)
    }

    /// Adds a person in `group` with `password` (priority 3).
    pub fn add_person(&self, username: &str, group: &str, password: &str) {
        self.add_person_at(username, group, "3", password);
    }

    /// Adds a person in `group` at `priority` with `password`.
    pub fn add_person_at(&self, username: &str, group: &str, priority: &str, password: &str) {
        self.lanyard(
            &[
                "staff",
                "add",
                username,
                "--name",
                username,
                "--group",
                group,
                "--priority",
                priority,
                "--password-stdin",
            ],
            None,
            Some(&format!("{password}\n")),
        )
        .ok();
    }

    /// The audit rows whose action starts with `action`, as JSON text.
    pub fn audit_json(&self, action: &str) -> String {
        self.lanyard(&["audit", "list", "--action", action, "--json"], None, None)
            .ok()
            .stdout
    }

    /// `GET /metrics` over HTTPS, trusting the broker's CA.
    pub fn lanyard_metrics(&self) -> String {
        self.https_get("/metrics")
    }

    /// A plain HTTPS GET of `path` on the API listener; the body.
    pub fn https_get(&self, path: &str) -> String {
        use std::io::Read;
        let tcp = std::net::TcpStream::connect(self.api_addr()).expect("connect to the API");
        let mut tls = self.tls_over(tcp);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.api_addr()
        )
        .expect("send request");
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response).into_owned();
        match response.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_owned(),
            None => response,
        }
    }

    /// The API listener's address.
    pub fn api_addr(&self) -> std::net::SocketAddr {
        self.api
            .trim_start_matches("https://")
            .parse()
            .expect("the API address")
    }

    /// A TLS client over `tcp` (connected to the API), trusting the broker's CA.
    pub fn tls_over(
        &self,
        tcp: std::net::TcpStream,
    ) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
        tls_client(&self.data_dir.join("ca.pem"), tcp)
    }

    /// The value of the gauge or counter `name` in `/metrics`, if shown.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let prefix = format!("{name} ");
        self.lanyard_metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
    }

    /// Waits up to `limit` until the metric `name` satisfies `ready`.
    pub fn wait_metric(&self, name: &str, limit: Duration, ready: impl Fn(f64) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.metric(name).is_some_and(&ready) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the `lanyard` CLI against this broker.
    pub fn lanyard(&self, args: &[&str], token: Option<&str>, stdin: Option<&str>) -> Run {
        let admin = self.admin_token();
        let mut cmd = Command::new(bin("lanyard"));
        cmd.args(args)
            .env("LANYARD_BROKER", &self.api)
            .env("LANYARD_CA_CERT", self.data_dir.join("ca.pem"))
            .env("LANYARD_TOKEN", token.unwrap_or(&admin))
            .env_remove("LANYARD_TOKEN_FILE");
        run(cmd, stdin)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `limit` for `child` to exit; its exit code.
fn wait_child(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// What a finished command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {}", self.stderr);
        self
    }
}

/// Runs `cmd` with a stdout nobody reads (a pipe whose read end is already
/// closed, as after `| head` has exited): every write to it fails.
pub fn run_with_closed_stdout(mut cmd: Command) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let out = cmd
        .spawn()
        .expect("spawn")
        .wait_with_output()
        .expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run(mut cmd: Command, stdin: Option<&str>) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A TCP echo server on 127.0.0.1 (one thread per connection); it echoes
/// until the client half-closes, then closes its side.
pub fn echo_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = conn.try_clone().expect("clone");
                let _ = std::io::copy(&mut reader, &mut conn);
                let _ = conn.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// A small HTTP/1.1 server on 127.0.0.1 that answers every request with
/// `body` and closes.
pub fn http_server(body: &'static str) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind http");
    let addr = listener.local_addr().expect("http addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                use std::io::Read;
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes());
            });
        }
    });
    addr
}

/// A small HTTP/1.1 server on 127.0.0.1 serving HTML `pages` by path (the
/// query string ignored; 404 for any other path), each answer with the
/// extra `headers` (a Content-Security-Policy, say), then closing.
pub fn http_site(headers: &[(&str, &str)], pages: &[(&str, &str)]) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind http");
    let addr = listener.local_addr().expect("http addr");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let pages: std::sync::Arc<std::collections::HashMap<String, String>> = std::sync::Arc::new(
        pages
            .iter()
            .map(|(path, body)| ((*path).to_owned(), (*body).to_owned()))
            .collect(),
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (extra, pages) = (extra.clone(), pages.clone());
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                use std::io::Read;
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) if request.len() + n > 64 * 1024 => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let target = request.split_whitespace().nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or(target);
                let (status, body) = match pages.get(path) {
                    Some(body) => ("200 OK", body.as_str()),
                    None => ("404 Not Found", "<!doctype html><title>Not found</title>"),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes());
            });
        }
    });
    addr
}

/// Runs `lanyard-agent` with a state dir of its own.
#[derive(Debug, Clone)]
pub struct Agent {
    pub state_dir: PathBuf,
}

impl Agent {
    pub fn new(state_dir: PathBuf) -> Self {
        Self { state_dir }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("lanyard-agent"));
        cmd.arg("--state-dir").arg(&self.state_dir);
        cmd
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd, stdin)
    }

    /// `enroll CODE` then `login USER --password-stdin`.
    pub fn enrol_and_login(&self, code: &str, username: &str, password: &str) {
        self.run(&["enroll", code], None).ok();
        self.run(
            &["login", username, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
        .ok();
    }

    /// Starts `lanyard-agent up ARGS...`.
    pub fn up(&self, args: &[&str]) -> UpProcess {
        let stderr = self.state_dir.with_extension("up.log");
        let mut cmd = self.command();
        // Debug logs, so that tests see everything it would ever log.
        cmd.arg("up")
            .args(args)
            .env("LANYARD_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("agent log"));
        let mut child = cmd.spawn().expect("spawn lanyard-agent up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        UpProcess {
            child,
            lines: rx,
            stderr,
        }
    }
}

/// A running `lanyard-agent up`.
pub struct UpProcess {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub stderr: PathBuf,
}

impl UpProcess {
    /// Waits for the next `lanyard-agent up ...` line; its forwards, by app
    /// (the local proxy's `proxy=` and `pac=` left out).
    pub fn wait_ready(&mut self, limit: Duration) -> std::collections::BTreeMap<String, u16> {
        parse_up_line(&self.wait_ready_line(limit)).0
    }

    /// Waits for the next `lanyard-agent up ...` line, as printed.
    pub fn wait_ready_line(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("lanyard-agent up") => return line,
                Ok(_) => continue,
                Err(_) => panic!(
                    "no ready line from lanyard-agent up within {limit:?}; its log:\n{}",
                    self.log()
                ),
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits up to `limit` for `needle` to appear in the agent's log.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log().contains(needle)
    }

    /// Waits up to `limit` for the agent to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_child(&mut self.child, limit)
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `up` line's forwards by app, and the local proxy's port and PAC URL
/// (the line's last two words, `proxy=ADDR pac=URL`, when it runs one).
pub fn parse_up_line(
    line: &str,
) -> (
    std::collections::BTreeMap<String, u16>,
    Option<(u16, String)>,
) {
    let mut words: Vec<&str> = line.split_whitespace().skip(2).collect();
    let mut proxy = None;
    if let [.., p, u] = words[..] {
        if let (Some(addr), Some(pac)) = (p.strip_prefix("proxy="), u.strip_prefix("pac=")) {
            let port = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            proxy = port.map(|port| (port, pac.to_owned()));
            words.truncate(words.len() - 2);
        }
    }
    let forwards = words
        .into_iter()
        .filter_map(|f| {
            let (app, addr) = f.split_once('=')?;
            let port = addr.rsplit_once(':')?.1.parse().ok()?;
            Some((app.to_owned(), port))
        })
        .collect();
    (forwards, proxy)
}

/// Sends `data` to 127.0.0.1:`port`, half-closes, and reads everything back.
pub fn echo_through(port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = conn.try_clone()?;
    let data = data.to_vec();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&data)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::new();
    conn.read_to_end(&mut back)?;
    sender.join().expect("sender thread")?;
    Ok(back)
}

/// A repeatable byte pattern, different per `seed`: what tunnel tests send
/// and check (the stress tester's own, so both check bytes the same way).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    lanyard_cli::commands::stress::sim::pattern(seed, len)
}

/// A TLS client over `tcp` (connected to a broker's API on 127.0.0.1),
/// trusting the CA certificate in the PEM file `ca`.
pub fn tls_client(
    ca: &Path,
    tcp: std::net::TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::from_pem_file(ca).expect("ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("TLS client");
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads one HTTP/1.1 response with a Content-Length body (as the API
/// answers) from a kept-alive connection; its status, or `None` at the end
/// of the connection.
pub fn read_http_response(conn: &mut impl std::io::Read) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).ok()?;
    Some(status)
}

/// Resident memory of a process, in KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
