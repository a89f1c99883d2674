//! `lanyard-agent login --sso`: sign-in with the organisation's identity
//! provider (authorization code + PKCE, the broker being the relying party).
//!
//! The agent asks the broker for its redirect ports, listens on the first
//! free one on 127.0.0.1, asks for the provider's URL for that port, has
//! the browser open it (or prints it), takes the provider's redirect
//! (`GET /callback?code=…&state=…`) and hands code and state to the broker
//! over the device's own connection; the broker answers with tokens as a
//! password sign-in does. The code is never logged.
//!
//! `lanyard-agent login --device-code`: the device authorization grant
//! (RFC 8628) for a laptop whose browser cannot reach the loopback
//! redirect: the person opens the provider's address on any device and
//! enters the code shown; the broker polls the provider.

use std::time::Duration;

use lanyard_proto::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::account::{store_tokens, AccountError};
use crate::client::{self, ClientError};
use crate::identity::{Device, Tokens};
use crate::state::StateDir;

/// How long the person has to sign in at the provider.
pub const WAIT_FOR_BROWSER: Duration = Duration::from_secs(300);
/// The browser's request is read within this, at most this long.
const REQUEST_WITHIN: Duration = Duration::from_secs(10);
const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("none of the broker's SSO redirect ports ({0}) is free on 127.0.0.1; close what uses them and try again")]
    NoFreePort(String),
    #[error(
        "no sign-in came back from the browser within {0:?}; run `lanyard-agent login --sso` again"
    )]
    TimedOut(Duration),
    #[error("the identity provider refused the sign-in: {0}")]
    Provider(String),
    #[error("cannot listen for the browser: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ClientError> for SsoError {
    fn from(e: ClientError) -> Self {
        SsoError::Account(e.into())
    }
}

/// What the browser brought back to the loopback listener.
enum Callback {
    Code { code: String, state: String },
    Error(String),
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The callback from a request line `GET /callback?… HTTP/1.1`; `None`
/// for any other request (a favicon, say).
fn parse_callback(head: &str) -> Option<Callback> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    if method != "GET" {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/callback" {
        return None;
    }
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "code" => code = Some(v),
            "state" => state = Some(v),
            "error" => error = Some(v),
            "error_description" => description = Some(v),
            _ => {}
        }
    }
    if let Some(e) = error {
        let text = match description {
            Some(d) if !d.is_empty() => format!("{e}: {d}"),
            _ => e,
        };
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        return Some(Callback::Error(text));
    }
    Some(Callback::Code {
        code: code?,
        state: state?,
    })
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_REQUEST {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn answer(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Lanyard</title><p>{}</p>",
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Waits for the browser's redirect: the stream (to answer on) and what
/// it brought.
async fn wait_for_callback(listener: &TcpListener) -> Result<(TcpStream, Callback), SsoError> {
    loop {
        let (mut stream, peer) = listener.accept().await?;
        if !peer.ip().is_loopback() {
            continue;
        }
        let head = match tokio::time::timeout(REQUEST_WITHIN, read_head(&mut stream)).await {
            Ok(Ok(h)) => h,
            _ => continue,
        };
        match parse_callback(&head) {
            Some(cb) => return Ok((stream, cb)),
            None => answer(&mut stream, "404 Not Found", "Not a Lanyard sign-in.").await,
        }
    }
}

/// The browser's request, waiting for its answer page.
pub struct BrowserReply(TcpStream);

impl std::fmt::Debug for BrowserReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrowserReply")
    }
}

impl BrowserReply {
    /// Shows `text` in the browser tab.
    pub async fn say(mut self, text: &str) {
        answer(&mut self.0, "200 OK", text).await;
    }
}

/// Listens on the first of `ports` free on 127.0.0.1.
pub async fn listen_first_free(ports: &[u16]) -> Result<(TcpListener, u16), SsoError> {
    for port in ports {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", *port)).await {
            return Ok((l, *port));
        }
    }
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(SsoError::NoFreePort(list))
}

/// Waits (at most [`WAIT_FOR_BROWSER`]) for the provider's redirect on
/// `listener`: the code and state, and the tab to answer. A provider's
/// error is answered and returned.
pub async fn wait_for_code(
    listener: TcpListener,
) -> Result<(String, String, BrowserReply), SsoError> {
    let (mut stream, callback) =
        match tokio::time::timeout(WAIT_FOR_BROWSER, wait_for_callback(&listener)).await {
            Ok(r) => r?,
            Err(_) => return Err(SsoError::TimedOut(WAIT_FOR_BROWSER)),
        };
    drop(listener);
    match callback {
        Callback::Code { code, state } => Ok((code, state, BrowserReply(stream))),
        Callback::Error(e) => {
            answer(&mut stream, "200 OK", &format!("Sign-in refused: {e}")).await;
            Err(SsoError::Provider(e))
        }
    }
}

/// Tries to open `url` in the person's browser; false if no opener ran.
pub fn open_browser(url: &str) -> bool {
    let tries: &[(&str, &[&str])] = if cfg!(target_os = "macos") {
        &[("open", &[])]
    } else if cfg!(windows) {
        &[("rundll32", &["url.dll,FileProtocolHandler"])]
    } else {
        &[("xdg-open", &[])]
    };
    tries.iter().any(|(cmd, args)| {
        std::process::Command::new(cmd)
            .args(*args)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
    })
}

/// Signs a person in through the identity provider; `show` is given the
/// URL to open (it prints it, or opens the browser and prints it).
pub async fn sign_in(
    state: &StateDir,
    device: &Device,
    conn: &quinn::Connection,
    show: impl FnOnce(&str),
) -> Result<Tokens, SsoError> {
    let Message::SsoAuthorize { ports, .. } =
        client::request(conn, &Message::SsoStart { port: 0 }).await?
    else {
        return Err(ClientError::Unexpected.into());
    };
    let (listener, port) = listen_first_free(&ports).await?;
    let Message::SsoAuthorize { url, .. } =
        client::request(conn, &Message::SsoStart { port }).await?
    else {
        return Err(ClientError::Unexpected.into());
    };
    if url.is_empty() {
        return Err(ClientError::Unexpected.into());
    }
    show(&url);
    let (code, state_param, reply) = wait_for_code(listener).await?;
    let finished = client::request(
        conn,
        &Message::SsoFinish {
            code,
            state: state_param,
        },
    )
    .await;
    match finished {
        Ok(Message::SsoTokens {
            username,
            access_token,
            refresh_token,
            expires_in,
        }) => {
            reply
                .say(&format!(
                    "Signed in to Lanyard as {username}. You can close this tab."
                ))
                .await;
            let tokens = store_tokens(
                state,
                device,
                username,
                Message::Tokens {
                    access_token,
                    refresh_token,
                    expires_in,
                },
            )?;
            Ok(tokens)
        }
        Ok(_) => {
            reply.say("Sign-in failed: an unexpected answer.").await;
            Err(ClientError::Unexpected.into())
        }
        Err(e) => {
            reply.say(&format!("Sign-in refused: {e}")).await;
            Err(e.into())
        }
    }
}

/// What the person is told to do for a device code sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCodePrompt {
    /// Where to go, on any device with a browser.
    pub verification_uri: String,
    /// The address with the code in it, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// The code to enter there.
    pub user_code: String,
    pub expires_in: Duration,
}

/// Signs a person in with a device code (RFC 8628): the broker starts it
/// at the identity provider; `show` is given what to open and the code
/// to enter; the broker then waits for the person (polling the provider)
/// and answers with tokens as a password sign-in does.
pub async fn device_sign_in(
    state: &StateDir,
    device: &Device,
    conn: &quinn::Connection,
    show: impl FnOnce(&DeviceCodePrompt),
) -> Result<Tokens, SsoError> {
    let Message::DeviceAuthorize {
        handle,
        user_code,
        verification_uri,
        verification_uri_complete,
        expires_in,
        ..
    } = client::request(conn, &Message::DeviceStart).await?
    else {
        return Err(ClientError::Unexpected.into());
    };
    if user_code.is_empty() || verification_uri.is_empty() {
        return Err(ClientError::Unexpected.into());
    }
    let expires_in = Duration::from_secs(u64::from(expires_in));
    show(&DeviceCodePrompt {
        verification_uri,
        verification_uri_complete: Some(verification_uri_complete).filter(|u| !u.is_empty()),
        user_code,
        expires_in,
    });
    // The broker answers within the code's life (it stops polling then);
    // a minute more for the answer to come back.
    let within = expires_in + Duration::from_secs(60);
    match client::request_within(conn, &Message::DevicePoll { handle }, within).await? {
        Message::SsoTokens {
            username,
            access_token,
            refresh_token,
            expires_in,
        } => Ok(store_tokens(
            state,
            device,
            username,
            Message::Tokens {
                access_token,
                refresh_token,
                expires_in,
            },
        )?),
        _ => Err(ClientError::Unexpected.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_is_read_from_the_request_line() {
        let Some(Callback::Code { code, state }) =
            parse_callback("GET /callback?code=a%2Bb&state=s1&iss=x HTTP/1.1\r\nHost: x\r\n\r\n")
        else {
            panic!("a callback");
        };
        assert_eq!((code.as_str(), state.as_str()), ("a+b", "s1"));
        let Some(Callback::Error(e)) = parse_callback(
            "GET /callback?error=access_denied&error_description=no%0Away HTTP/1.1\r\n",
        ) else {
            panic!("an error");
        };
        assert_eq!(e, "access_denied: noway");
        assert!(parse_callback("GET /favicon.ico HTTP/1.1\r\n").is_none());
        assert!(parse_callback("POST /callback?code=a&state=b HTTP/1.1\r\n").is_none());
        assert!(parse_callback("GET /callback?code=a HTTP/1.1\r\n").is_none());
    }
}
