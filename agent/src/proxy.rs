//! The local proxy (`lanyard-agent up --proxy 127.0.0.1:PORT`): staff's
//! browsers and tools reach apps by their usual names.
//!
//! One listener on this laptop speaks HTTP CONNECT, plain HTTP proxying
//! (absolute-form requests) and SOCKS5 (no authentication, CONNECT; a
//! domain name is matched against the apps, never looked up locally), and
//! serves the PAC file at `/proxy.pac`. A request for `host:port` that
//! names an allowed app ([`Catalog::resolve`]) becomes one tunnel stream
//! to that app, opened like a forward's, so the broker decides it; the
//! broker's refusal is passed on. Anything else is refused: the proxy never
//! connects to the open internet.
//!
//! Plain HTTP: one request per client connection. The request line is
//! rewritten to origin-form, hop-by-hop headers are dropped and
//! `Connection: close` is sent, so the app answers and closes, and the
//! client opens a new connection for its next request (to whichever app).
//!
//! A client is bounded: its request head (16 KiB) or SOCKS handshake must
//! arrive within 10 s, and at most 256 clients are served at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lanyard_proto::ErrorCode;
use lanyard_relay::{Greeting, TunnelError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::forward::{failure_reason, Streams, NOT_CONNECTED};
use crate::pac::split_host_port;
pub use crate::pac::Catalog;

/// The port tried first when none is asked for; the next ones after it.
pub const DEFAULT_PORT: u16 = 3128;
/// How many ports from [`DEFAULT_PORT`] on are tried before any free one.
const DEFAULT_PORTS_TRIED: u16 = 10;
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// The most header lines in a request head.
const MAX_HEADERS: usize = 100;
/// How long a client has to send its request head or SOCKS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients served at once; more are closed at once.
const MAX_CLIENTS: usize = 256;
/// Where the PAC file is served.
pub const PAC_PATH: &str = "/proxy.pac";

/// Where the proxy listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAt {
    /// No proxy.
    Off,
    /// 127.0.0.1:3128, or the next free port.
    Default,
    /// Exactly here (port 0: any free port).
    At(SocketAddr),
}

/// The PAC file's address for a proxy at `addr`.
pub fn pac_url(addr: SocketAddr) -> String {
    format!("http://{addr}{PAC_PATH}")
}

/// Binds the proxy's listener. The proxy has no authentication, so it
/// listens on a loopback address only.
pub async fn bind(at: ProxyAt) -> std::io::Result<Option<TcpListener>> {
    match at {
        ProxyAt::Off => Ok(None),
        ProxyAt::At(addr) if !addr.ip().is_loopback() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the proxy listens on this laptop only: use 127.0.0.1:PORT",
        )),
        ProxyAt::At(addr) => TcpListener::bind(addr).await.map(Some),
        ProxyAt::Default => {
            for port in DEFAULT_PORT..DEFAULT_PORT + DEFAULT_PORTS_TRIED {
                if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
                    return Ok(Some(l));
                }
            }
            TcpListener::bind(("127.0.0.1", 0)).await.map(Some)
        }
    }
}

/// A running proxy: where it listens, and the apps it serves (set them
/// whenever the broker sends a new list).
pub struct Proxy {
    pub addr: SocketAddr,
    apps: watch::Sender<Arc<Catalog>>,
}

impl Proxy {
    /// Serves `listener` until the runtime stops, opening streams with
    /// `streams`.
    pub fn start(listener: TcpListener, streams: Streams) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (apps, catalog) = watch::channel(Arc::new(Catalog::default()));
        tokio::spawn(serve(listener, addr, streams, catalog));
        Ok(Self { addr, apps })
    }

    /// The apps open to this person now (the PAC file follows at once).
    pub fn set_apps(&self, catalog: Catalog) {
        self.apps.send_if_modified(|old| {
            let changed = **old != catalog;
            if changed {
                *old = Arc::new(catalog);
            }
            changed
        });
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    streams: Streams,
    catalog: watch::Receiver<Arc<Catalog>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("local proxy: {MAX_CLIENTS} clients already; closing a new one");
            continue;
        };
        let client = Client {
            proxy: addr,
            streams: streams.clone(),
            apps: catalog.borrow().clone(),
        };
        tokio::spawn(async move {
            client.serve(tcp).await;
            drop(permit);
        });
    }
}

/// What a client asked for, once its request head or handshake is read.
enum Ask {
    /// A tunnel to `host:port`, and what goes around it.
    Tunnel {
        host: String,
        port: u16,
        kind: Kind,
        /// Bytes for the app ahead of the client's own.
        to_app: Vec<u8>,
    },
    /// An answer from the proxy itself (the PAC file, a refusal).
    Answer(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    PlainHttp,
    Socks,
}

struct Client {
    proxy: SocketAddr,
    streams: Streams,
    apps: Arc<Catalog>,
}

impl Client {
    async fn serve(self, mut tcp: TcpStream) {
        let ask = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.read_ask(&mut tcp)).await {
            Ok(Ok(ask)) => ask,
            // A client that sent nothing sensible in time, or went away.
            Ok(Err(_)) | Err(_) => return,
        };
        let (host, port, kind, to_app) = match ask {
            Ask::Answer(bytes) => return answer(tcp, &bytes).await,
            Ask::Tunnel {
                host,
                port,
                kind,
                to_app,
            } => (host, port, kind, to_app),
        };
        let Some(app) = self.apps.resolve(&host, port).map(str::to_owned) else {
            let why = not_an_app(&self.apps, &host, port);
            return answer(tcp, &refusal(kind, Refusal::NotAllowed, &why)).await;
        };
        let Some(conn) = self.streams.connection().await else {
            self.streams.failed(&app, NOT_CONNECTED.into());
            return answer(tcp, &refusal(kind, Refusal::Unavailable, NOT_CONNECTED)).await;
        };
        let accepted: &[u8] = match kind {
            Kind::Connect => b"HTTP/1.1 200 Connection established\r\n\r\n",
            Kind::PlainHttp => b"",
            // Succeeded; the bound address is not told (0.0.0.0:0).
            Kind::Socks => &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        };
        let app_name = app.clone();
        let conn2 = conn.clone();
        let not_accepted = move |e: &TunnelError| -> Vec<u8> {
            match e.refusal() {
                Some((code, message)) => {
                    let how = match code {
                        ErrorCode::Unavailable | ErrorCode::AtCapacity => Refusal::Unavailable,
                        _ => Refusal::NotAllowed,
                    };
                    refusal(kind, how, &format!("{app_name}: {message}"))
                }
                None => refusal(
                    kind,
                    Refusal::Failed,
                    &format!("{app_name}: {}", failure_reason(&conn2, e)),
                ),
            }
        };
        let greeting = Greeting {
            to_app: &to_app,
            accepted,
            not_accepted: Some(&not_accepted),
        };
        let _ = self.streams.carry(&conn, &app, tcp, greeting).await;
    }

    /// Reads the request head or SOCKS handshake.
    async fn read_ask(&self, tcp: &mut TcpStream) -> std::io::Result<Ask> {
        let mut buf = Vec::with_capacity(1024);
        if read_more(tcp, &mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[0] == 5 {
            return socks(tcp, buf).await;
        }
        loop {
            if let Some(end) = head_end(&buf) {
                let rest = buf.split_off(end);
                return Ok(self.http(&buf, rest));
            }
            if buf.len() >= MAX_HEAD {
                return Ok(Ask::Answer(http_answer(
                    431,
                    "Request Header Fields Too Large",
                    &format!("the request head is over {MAX_HEAD} bytes"),
                )));
            }
            if read_more(tcp, &mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// An HTTP request: CONNECT, an absolute-form request to proxy, or a
    /// request to the proxy itself (the PAC file). `rest` is what followed
    /// the head.
    fn http(&self, head: &[u8], rest: Vec<u8>) -> Ask {
        let bad = |why: &str| Ask::Answer(http_answer(400, "Bad Request", why));
        let head = match parse_head(head) {
            Ok(h) => h,
            Err(why) => return bad(why),
        };
        if head.method == "CONNECT" {
            let Some((host, port)) = split_host_port(&head.target) else {
                return bad("CONNECT needs HOST:PORT");
            };
            return Ask::Tunnel {
                host: host.to_owned(),
                port,
                kind: Kind::Connect,
                to_app: rest,
            };
        }
        if head.target.starts_with('/') {
            return Ask::Answer(self.local(&head));
        }
        let Some(url) = strip_prefix_ignore_case(&head.target, "http://") else {
            return bad("this proxy takes http:// requests; for https, CONNECT (what browsers do)");
        };
        let (authority, path) = match url.find(['/', '?', '#']) {
            Some(i) => (&url[..i], &url[i..]),
            None => (url, "/"),
        };
        let path = match path.split_once('#') {
            Some((p, _)) => p,
            None => path,
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') {
            return bad("user names in proxied URLs are not passed on");
        }
        let (host, port) = if authority.ends_with(']') || !authority.contains(':') {
            (authority, 80)
        } else {
            match split_host_port(authority) {
                Some(hp) => hp,
                None => return bad("bad host or port in the URL"),
            }
        };
        if host.is_empty() {
            return bad("the URL names no host");
        }
        let mut to_app = rewrite(&head, &path, authority).into_bytes();
        to_app.extend_from_slice(&rest);
        Ask::Tunnel {
            host: host.to_owned(),
            port,
            kind: Kind::PlainHttp,
            to_app,
        }
    }

    /// A request to the proxy itself: the PAC file, or nothing.
    fn local(&self, head: &Head) -> Vec<u8> {
        let path = head.target.split('?').next().unwrap_or("");
        if path != PAC_PATH {
            return http_answer(
                404,
                "Not Found",
                &format!("this is Lanyard's local proxy; its PAC file is at {PAC_PATH}"),
            );
        }
        if head.method != "GET" && head.method != "HEAD" {
            return http_answer(405, "Method Not Allowed", "use GET");
        }
        let pac = self.apps.pac(self.proxy);
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            pac.len()
        )
        .into_bytes();
        if head.method == "GET" {
            out.extend_from_slice(pac.as_bytes());
        }
        out
    }
}

/// Answers a client and closes its connection in order: what it still
/// sends is read and dropped for a moment (at most 64 KiB, 2 s), so the
/// close does not reset the connection before the answer is read.
async fn answer(mut tcp: TcpStream, bytes: &[u8]) {
    if tcp.write_all(bytes).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// Why `host:port` is not served, for the person to read.
fn not_an_app(apps: &Catalog, host: &str, port: u16) -> String {
    let asked = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match apps.near_miss(host) {
        Some((app, right)) => {
            format!("not a Lanyard app: {asked} ({host} is app {app}, on port {right})")
        }
        None => format!(
            "not a Lanyard app: {asked}; this proxy reaches only the apps open to you on this device"
        ),
    }
}

async fn read_more(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let room = (MAX_HEAD + 1).saturating_sub(buf.len()).min(chunk.len());
    let n = tcp.read(&mut chunk[..room.max(1)]).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Where the head ends (after its blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A request head: its line and its headers, as sent.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_head(bytes: &[u8]) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the request head is not UTF-8")?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("bad request line: use METHOD TARGET HTTP/1.1");
    };
    if !is_token(method) || target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("bad request line: use METHOD TARGET HTTP/1.1");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err("this proxy speaks HTTP/1.0 and HTTP/1.1");
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err("too many header lines");
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err("a header line has no ':'");
        };
        if !is_token(name) {
            return Err("a header's name is not valid (folded lines are not taken)");
        }
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err("a header's value has control characters");
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    })
}

/// The head sent to the app for a plain HTTP request: origin-form, the
/// client's headers without the hop-by-hop ones (and those its
/// `Connection` names), a `Host` if it sent none, `Connection: close`.
fn rewrite(head: &Head, path: &str, authority: &str) -> String {
    let named: Vec<String> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let hop = |name: &str| {
        let name = name.to_ascii_lowercase();
        matches!(
            name.as_str(),
            "connection"
                | "proxy-connection"
                | "keep-alive"
                | "proxy-authorization"
                | "te"
                | "upgrade"
        ) || named.contains(&name)
    };
    let mut out = format!("{} {path} {}\r\n", head.method, head.version);
    if !head
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        out.push_str(&format!("Host: {authority}\r\n"));
    }
    for (name, value) in head.headers.iter().filter(|(n, _)| !hop(n)) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// How a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not an app open to this person, or the broker refused it.
    NotAllowed,
    /// The app or the broker cannot serve it now.
    Unavailable,
    /// The stream failed before it was accepted.
    Failed,
}

/// The answer to a refused request, in the client's protocol.
fn refusal(kind: Kind, how: Refusal, why: &str) -> Vec<u8> {
    match kind {
        Kind::Socks => {
            let code = match how {
                // Connection not allowed by ruleset.
                Refusal::NotAllowed => 2,
                // Connection refused.
                Refusal::Unavailable => 5,
                // General failure.
                Refusal::Failed => 1,
            };
            vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
        }
        Kind::Connect | Kind::PlainHttp => match how {
            Refusal::NotAllowed => http_answer(403, "Forbidden", why),
            Refusal::Unavailable => http_answer(502, "Bad Gateway", why),
            Refusal::Failed => http_answer(502, "Bad Gateway", why),
        },
    }
}

/// A short plain-text answer from the proxy itself.
fn http_answer(status: u16, phrase: &str, why: &str) -> Vec<u8> {
    let body: String = format!("lanyard: {why}\n")
        .chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect();
    format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A SOCKS5 handshake (RFC 1928): no authentication, CONNECT only. A
/// domain name is passed on as it is, to be matched against the apps.
async fn socks(tcp: &mut TcpStream, mut buf: Vec<u8>) -> std::io::Result<Ask> {
    let mut at = 0;
    let methods = usize::from(need(tcp, &mut buf, &mut at, 2).await?[1]);
    let offered = need(tcp, &mut buf, &mut at, methods).await?.to_vec();
    if !offered.contains(&0) {
        // No acceptable method.
        return Ok(Ask::Answer(vec![5, 0xff]));
    }
    tcp.write_all(&[5, 0]).await?;
    let request = need(tcp, &mut buf, &mut at, 4).await?.to_vec();
    if request[0] != 5 {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let host = match request[3] {
        1 => {
            let ip = need(tcp, &mut buf, &mut at, 4).await?;
            std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()
        }
        3 => {
            let len = usize::from(need(tcp, &mut buf, &mut at, 1).await?[0]);
            let name = need(tcp, &mut buf, &mut at, len).await?;
            match std::str::from_utf8(name) {
                Ok(n) if !n.is_empty() => n.to_owned(),
                // Address type not supported.
                _ => return Ok(Ask::Answer(vec![5, 8, 0, 1, 0, 0, 0, 0, 0, 0])),
            }
        }
        4 => {
            let ip = need(tcp, &mut buf, &mut at, 16).await?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(ip);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => return Ok(Ask::Answer(vec![5, 8, 0, 1, 0, 0, 0, 0, 0, 0])),
    };
    let p = need(tcp, &mut buf, &mut at, 2).await?;
    let port = u16::from_be_bytes([p[0], p[1]]);
    if request[1] != 1 {
        // Command not supported (BIND, UDP ASSOCIATE).
        return Ok(Ask::Answer(vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0]));
    }
    Ok(Ask::Tunnel {
        host,
        port,
        kind: Kind::Socks,
        to_app: buf.split_off(at),
    })
}

/// The next `n` bytes of the handshake from `buf` at `at`, reading more
/// as needed (a handshake is at most a few hundred bytes).
async fn need<'b>(
    tcp: &mut TcpStream,
    buf: &'b mut Vec<u8>,
    at: &mut usize,
    n: usize,
) -> std::io::Result<&'b [u8]> {
    while buf.len() < *at + n {
        if buf.len() > 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        if read_more(tcp, buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    let start = *at;
    *at += n;
    Ok(&buf[start..start + n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_is_rewritten_to_origin_form_with_connection_close() {
        let head = parse_head(
            b"GET http://hr.council.internal:8080/a?b=1 HTTP/1.1\r\nHost: hr.council.internal:8080\r\n\
              Proxy-Connection: keep-alive\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
              Accept: */*\r\n\r\n",
        )
        .unwrap();
        let out = rewrite(&head, "/a?b=1", "hr.council.internal:8080");
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: hr.council.internal:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let head = parse_head(b"GET http://hr/ HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            rewrite(&head, "/", "hr"),
            "GET / HTTP/1.0\r\nHost: hr\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn bad_heads_are_refused() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n",
            b"G\xffT / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: x\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(parse_head(head.as_bytes()).is_err());
    }

    #[test]
    fn the_head_ends_at_its_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
