//! The typed messages of protocol version 1.
//!
//! Streams: the agent opens an **enrol** stream (no client certificate yet)
//! or, with its device certificate, a **control** stream (sign-in, session
//! hello, refresh, keepalive and broker events) and one **tunnel** stream per
//! TCP connection, which starts with `StreamOpen` and continues as raw bytes
//! once the broker answers `StreamAccepted`.

use crate::codec::{DecodeError, Reader, Writer};
use crate::enrol::SECRET_LEN;

/// Field limits, in bytes. Generous for real use, small enough that a peer
/// cannot make us hold much.
pub mod limits {
    pub const NAME: usize = 64;
    pub const VERSION: usize = 64;
    pub const PASSWORD: usize = 1024;
    pub const TOKEN: usize = 8 * 1024;
    pub const MESSAGE: usize = 512;
    pub const PUBLIC_KEY: usize = 512;
    pub const SIGNATURE: usize = 512;
    pub const CERTIFICATE: usize = 16 * 1024;
    pub const APPS: usize = 1024;
    /// Broker addresses in a `Welcome`, and the length of each.
    pub const ADDRESSES: usize = crate::enrol::MAX_ADDRESSES;
    pub const ADDRESS: usize = crate::enrol::MAX_ADDRESS_LEN;
    /// An app's host names, and the length of each.
    pub const HOSTS: usize = crate::host::MAX_HOSTS_PER_APP;
    pub const HOST: usize = crate::host::MAX_HOST_LEN;
    /// The provider's sign-in URL in an `SsoAuthorize`.
    pub const URL: usize = 8 * 1024;
    /// The authorization code and `state` in an `SsoFinish`.
    pub const CODE: usize = 4 * 1024;
    pub const STATE: usize = 256;
    /// Loopback redirect ports in an `SsoAuthorize`.
    pub const PORTS: usize = 16;
    /// The user code in a `DeviceAuthorize`.
    pub const USER_CODE: usize = 64;
}

/// The device key's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    EcdsaP256,
    Ed25519,
}

/// Why the broker refused something. The agent prints the message and acts
/// on the code (e.g. backs off on `AtCapacity`, stops on `Revoked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest = 1,
    Unauthorized = 2,
    Forbidden = 3,
    NotFound = 4,
    AtCapacity = 5,
    Unavailable = 6,
    VersionMismatch = 7,
    Revoked = 8,
    Internal = 9,
}

impl ErrorCode {
    fn from_u16(v: u16) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => Self::BadRequest,
            2 => Self::Unauthorized,
            3 => Self::Forbidden,
            4 => Self::NotFound,
            5 => Self::AtCapacity,
            6 => Self::Unavailable,
            7 => Self::VersionMismatch,
            8 => Self::Revoked,
            9 => Self::Internal,
            _ => return Err(DecodeError::BadValue("error code")),
        })
    }
}

/// How an app is reached: TCP streams or UDP datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AppProtocol {
    #[default]
    Tcp,
    Udp,
}

impl AppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Tcp => "tcp",
            AppProtocol::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(AppProtocol::Tcp),
            "udp" => Some(AppProtocol::Udp),
            _ => None,
        }
    }
}

/// An app the person may reach from this device.
///
/// `target`, `hosts` and `protocol` are the app's details, which let the
/// agent's local proxy know it by its usual names. They travel in a
/// trailing section of `Welcome` and `AppsChanged`, sent only to agents
/// of protocol version 3 or later; a grant without them has an empty
/// target, no hosts and TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppGrant {
    pub name: String,
    /// A local port the agent may use for it, or 0 for "any".
    pub port_hint: u16,
    /// Where the app listens, `host:port` (empty if not sent).
    pub target: String,
    /// The names it is known by, lowercased.
    pub hosts: Vec<String>,
    pub protocol: AppProtocol,
}

impl AppGrant {
    /// A grant with only a name (what protocol 1 and 2 carry).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    fn has_details(&self) -> bool {
        !self.target.is_empty() || !self.hosts.is_empty() || self.protocol != AppProtocol::Tcp
    }

    /// The grant as an agent older than protocol 3 is sent it.
    pub fn without_details(&self) -> Self {
        Self::named(self.name.clone()).with_port_hint(self.port_hint)
    }

    fn with_port_hint(mut self, port_hint: u16) -> Self {
        self.port_hint = port_hint;
        self
    }

    /// The encoded size of this grant's details.
    fn details_len(&self) -> usize {
        let hosts = &self.hosts[..self.hosts.len().min(limits::HOSTS)];
        2 + self.target.len() + 1 + 1 + hosts.iter().map(|h| 2 + h.len()).sum::<usize>()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// Agent → broker, first on an enrol stream.
    EnrolRequest {
        secret: [u8; SECRET_LEN],
        key_alg: KeyAlg,
        /// The raw public key (uncompressed P-256 point or Ed25519 key).
        public_key: Vec<u8>,
        /// The device key's signature over `secret || public_key`: proof
        /// that the agent holds the private key.
        proof: Vec<u8>,
        agent_version: String,
        os: String,
    },
    /// Broker → agent: the device certificate (DER) and its expiry (s).
    Certificate {
        certificate: Vec<u8>,
        expires_at: u64,
    },
    /// Agent → broker on a control stream: renew the presented certificate.
    Renew,
    /// Agent → broker: sign a person in on this device.
    SignIn {
        username: String,
        password: String,
        totp: Option<String>,
    },
    /// Broker → agent: tokens after a sign-in or refresh.
    Tokens {
        access_token: String,
        refresh_token: String,
        expires_in: u32,
    },
    /// Agent → broker: start a sign-in with the organisation's identity
    /// provider, whose redirect comes back to 127.0.0.1:`port`. Port 0
    /// asks only for the broker's redirect ports.
    SsoStart {
        port: u16,
    },
    /// Broker → agent: the provider's URL to open (empty when the agent
    /// asked with port 0) and the redirect ports it may listen on, in order.
    SsoAuthorize {
        url: String,
        ports: Vec<u16>,
    },
    /// Agent → broker: the code and `state` the provider redirected with.
    SsoFinish {
        code: String,
        state: String,
    },
    /// Broker → agent: tokens after an SSO sign-in, and who signed in.
    SsoTokens {
        username: String,
        access_token: String,
        refresh_token: String,
        expires_in: u32,
    },
    /// Agent → broker: start a device code sign-in (RFC 8628) with the
    /// organisation's identity provider.
    DeviceStart,
    /// Broker → agent: what the person opens (`verification_uri`, or
    /// `verification_uri_complete` with the code in it; empty when the
    /// provider gives none) and the code they enter there, valid for
    /// `expires_in` seconds; `handle` names the sign-in in a `DevicePoll`.
    DeviceAuthorize {
        handle: String,
        user_code: String,
        verification_uri: String,
        verification_uri_complete: String,
        expires_in: u32,
        interval: u32,
    },
    /// Agent → broker: wait for the person to sign in at the provider; the
    /// broker answers `SsoTokens` once they have, or `Refused`.
    DevicePoll {
        handle: String,
    },
    /// Agent → broker: exchange a refresh token.
    Refresh {
        refresh_token: String,
    },
    /// Agent → broker: end the sign-in this refresh token belongs to (its
    /// whole family), and with it the sign-in's live session.
    SignOut {
        refresh_token: String,
    },
    /// Broker → agent: the sign-in has ended.
    SignedOut,
    /// Agent → broker, first on a control stream for a session.
    Hello {
        version: u16,
        access_token: String,
        agent_version: String,
        os: String,
    },
    /// Broker → agent: the session and what it may reach, and the QUIC
    /// addresses of the broker's nodes. `addrs` is a trailing field, sent
    /// only when not empty or when the apps' details follow (and only to
    /// agents of protocol version 2 or later, which read it); a `Welcome`
    /// without it decodes with none. The apps' details (target, host
    /// names, protocol) trail it, for protocol 3 agents only.
    Welcome {
        session_id: String,
        apps: Vec<AppGrant>,
        addrs: Vec<String>,
    },
    /// Broker → agent: the set of apps changed (their details trail, for
    /// protocol 3 agents only).
    AppsChanged {
        apps: Vec<AppGrant>,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Broker → agent: the session ends now and must not be redialled
    /// until the reason is dealt with.
    Revoked {
        reason: String,
    },
    /// Either side: a request was refused.
    Refused {
        code: ErrorCode,
        message: String,
    },
    /// Agent → broker, first on a tunnel stream.
    StreamOpen {
        app: String,
        request_id: u64,
    },
    /// Broker → agent: the stream is allowed; raw bytes follow.
    StreamAccepted {
        request_id: u64,
    },
}

impl std::fmt::Debug for Message {
    /// Secrets (enrolment secret, password, tokens) never appear.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::EnrolRequest {
                key_alg,
                agent_version,
                os,
                ..
            } => f
                .debug_struct("EnrolRequest")
                .field("key_alg", key_alg)
                .field("agent_version", agent_version)
                .field("os", os)
                .finish_non_exhaustive(),
            Message::Certificate {
                expires_at,
                certificate,
            } => f
                .debug_struct("Certificate")
                .field("len", &certificate.len())
                .field("expires_at", expires_at)
                .finish(),
            Message::Renew => f.write_str("Renew"),
            Message::SignIn { username, totp, .. } => f
                .debug_struct("SignIn")
                .field("username", username)
                .field("totp", &totp.is_some())
                .finish_non_exhaustive(),
            Message::Tokens { expires_in, .. } => f
                .debug_struct("Tokens")
                .field("expires_in", expires_in)
                .finish_non_exhaustive(),
            Message::SsoStart { port } => f.debug_struct("SsoStart").field("port", port).finish(),
            Message::SsoAuthorize { ports, .. } => f
                .debug_struct("SsoAuthorize")
                .field("ports", ports)
                .finish_non_exhaustive(),
            Message::SsoFinish { .. } => f.write_str("SsoFinish"),
            Message::SsoTokens {
                username,
                expires_in,
                ..
            } => f
                .debug_struct("SsoTokens")
                .field("username", username)
                .field("expires_in", expires_in)
                .finish_non_exhaustive(),
            Message::DeviceStart => f.write_str("DeviceStart"),
            Message::DeviceAuthorize {
                verification_uri,
                expires_in,
                interval,
                ..
            } => f
                .debug_struct("DeviceAuthorize")
                .field("verification_uri", verification_uri)
                .field("expires_in", expires_in)
                .field("interval", interval)
                .finish_non_exhaustive(),
            Message::DevicePoll { .. } => f.write_str("DevicePoll"),
            Message::Refresh { .. } => f.write_str("Refresh"),
            Message::SignOut { .. } => f.write_str("SignOut"),
            Message::SignedOut => f.write_str("SignedOut"),
            Message::Hello {
                version,
                agent_version,
                os,
                ..
            } => f
                .debug_struct("Hello")
                .field("version", version)
                .field("agent_version", agent_version)
                .field("os", os)
                .finish_non_exhaustive(),
            Message::Welcome {
                session_id,
                apps,
                addrs,
            } => f
                .debug_struct("Welcome")
                .field("session_id", session_id)
                .field("apps", apps)
                .field("addrs", addrs)
                .finish(),
            Message::AppsChanged { apps } => {
                f.debug_struct("AppsChanged").field("apps", apps).finish()
            }
            Message::Ping { nonce } => f.debug_struct("Ping").field("nonce", nonce).finish(),
            Message::Pong { nonce } => f.debug_struct("Pong").field("nonce", nonce).finish(),
            Message::Revoked { reason } => {
                f.debug_struct("Revoked").field("reason", reason).finish()
            }
            Message::Refused { code, message } => f
                .debug_struct("Refused")
                .field("code", code)
                .field("message", message)
                .finish(),
            Message::StreamOpen { app, request_id } => f
                .debug_struct("StreamOpen")
                .field("app", app)
                .field("request_id", request_id)
                .finish(),
            Message::StreamAccepted { request_id } => f
                .debug_struct("StreamAccepted")
                .field("request_id", request_id)
                .finish(),
        }
    }
}

mod tag {
    pub const ENROL_REQUEST: u8 = 0x01;
    pub const CERTIFICATE: u8 = 0x02;
    pub const RENEW: u8 = 0x03;
    pub const SIGN_IN: u8 = 0x10;
    pub const TOKENS: u8 = 0x11;
    pub const REFRESH: u8 = 0x12;
    pub const SIGN_OUT: u8 = 0x13;
    pub const SIGNED_OUT: u8 = 0x14;
    pub const SSO_START: u8 = 0x15;
    pub const SSO_AUTHORIZE: u8 = 0x16;
    pub const SSO_FINISH: u8 = 0x17;
    pub const SSO_TOKENS: u8 = 0x18;
    pub const DEVICE_START: u8 = 0x19;
    pub const DEVICE_AUTHORIZE: u8 = 0x1a;
    pub const DEVICE_POLL: u8 = 0x1b;
    pub const HELLO: u8 = 0x20;
    pub const WELCOME: u8 = 0x21;
    pub const APPS_CHANGED: u8 = 0x22;
    pub const PING: u8 = 0x23;
    pub const PONG: u8 = 0x24;
    pub const REVOKED: u8 = 0x25;
    pub const REFUSED: u8 = 0x26;
    pub const STREAM_OPEN: u8 = 0x30;
    pub const STREAM_ACCEPTED: u8 = 0x31;
}

fn write_apps(w: &mut Writer, apps: &[AppGrant]) {
    let apps = &apps[..apps.len().min(limits::APPS)];
    w.u16(apps.len() as u16);
    for a in apps {
        w.string(&a.name);
        w.u16(a.port_hint);
    }
}

fn any_details(apps: &[AppGrant]) -> bool {
    apps.iter().take(limits::APPS).any(AppGrant::has_details)
}

/// The apps' details, in the order of the list before: a count, then for
/// each app its target, protocol and host names. The section is kept
/// within one frame: the details of apps past what fits are left off
/// (those apps are then reached by their local port only).
fn write_details(w: &mut Writer, apps: &[AppGrant]) {
    let apps = &apps[..apps.len().min(limits::APPS)];
    let mut room = crate::frame::MAX_FRAME.saturating_sub(1 + w.buf.len() + 2);
    let mut count = 0;
    for a in apps {
        let len = a.details_len();
        if len > room {
            break;
        }
        room -= len;
        count += 1;
    }
    w.u16(count as u16);
    for a in &apps[..count] {
        w.string(&a.target);
        w.u8(match a.protocol {
            AppProtocol::Tcp => 0,
            AppProtocol::Udp => 1,
        });
        let hosts = &a.hosts[..a.hosts.len().min(limits::HOSTS)];
        w.u8(hosts.len() as u8);
        for h in hosts {
            w.string(h);
        }
    }
}

fn read_details(r: &mut Reader<'_>, apps: &mut [AppGrant]) -> Result<(), DecodeError> {
    let n = usize::from(r.u16()?);
    if n > apps.len() {
        return Err(DecodeError::TooLong {
            len: n,
            max: apps.len(),
        });
    }
    for a in &mut apps[..n] {
        a.target = r.string(limits::ADDRESS)?;
        a.protocol = match r.u8()? {
            0 => AppProtocol::Tcp,
            1 => AppProtocol::Udp,
            _ => return Err(DecodeError::BadValue("app protocol")),
        };
        let hosts = usize::from(r.u8()?);
        if hosts > limits::HOSTS {
            return Err(DecodeError::TooLong {
                len: hosts,
                max: limits::HOSTS,
            });
        }
        a.hosts = (0..hosts)
            .map(|_| r.string(limits::HOST))
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}

fn read_addrs(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = usize::from(r.u16()?);
    if n > limits::ADDRESSES {
        return Err(DecodeError::TooLong {
            len: n,
            max: limits::ADDRESSES,
        });
    }
    (0..n).map(|_| r.string(limits::ADDRESS)).collect()
}

fn read_apps(r: &mut Reader<'_>) -> Result<Vec<AppGrant>, DecodeError> {
    let n = usize::from(r.u16()?);
    if n > limits::APPS {
        return Err(DecodeError::TooLong {
            len: n,
            max: limits::APPS,
        });
    }
    let mut apps = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        apps.push(AppGrant {
            name: r.string(limits::NAME)?,
            port_hint: r.u16()?,
            ..AppGrant::default()
        });
    }
    Ok(apps)
}

impl Message {
    /// A refusal with its reason.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Message::Refused {
            code,
            message: message.into(),
        }
    }

    /// The message's name, for errors and logs (never its contents).
    pub fn name(&self) -> &'static str {
        match self {
            Message::EnrolRequest { .. } => "EnrolRequest",
            Message::Certificate { .. } => "Certificate",
            Message::Renew => "Renew",
            Message::SignIn { .. } => "SignIn",
            Message::Tokens { .. } => "Tokens",
            Message::SsoStart { .. } => "SsoStart",
            Message::SsoAuthorize { .. } => "SsoAuthorize",
            Message::SsoFinish { .. } => "SsoFinish",
            Message::SsoTokens { .. } => "SsoTokens",
            Message::DeviceStart => "DeviceStart",
            Message::DeviceAuthorize { .. } => "DeviceAuthorize",
            Message::DevicePoll { .. } => "DevicePoll",
            Message::Refresh { .. } => "Refresh",
            Message::SignOut { .. } => "SignOut",
            Message::SignedOut => "SignedOut",
            Message::Hello { .. } => "Hello",
            Message::Welcome { .. } => "Welcome",
            Message::AppsChanged { .. } => "AppsChanged",
            Message::Ping { .. } => "Ping",
            Message::Pong { .. } => "Pong",
            Message::Revoked { .. } => "Revoked",
            Message::Refused { .. } => "Refused",
            Message::StreamOpen { .. } => "StreamOpen",
            Message::StreamAccepted { .. } => "StreamAccepted",
        }
    }

    /// The message type byte.
    pub fn tag(&self) -> u8 {
        match self {
            Message::EnrolRequest { .. } => tag::ENROL_REQUEST,
            Message::Certificate { .. } => tag::CERTIFICATE,
            Message::Renew => tag::RENEW,
            Message::SignIn { .. } => tag::SIGN_IN,
            Message::Tokens { .. } => tag::TOKENS,
            Message::SsoStart { .. } => tag::SSO_START,
            Message::SsoAuthorize { .. } => tag::SSO_AUTHORIZE,
            Message::SsoFinish { .. } => tag::SSO_FINISH,
            Message::SsoTokens { .. } => tag::SSO_TOKENS,
            Message::DeviceStart => tag::DEVICE_START,
            Message::DeviceAuthorize { .. } => tag::DEVICE_AUTHORIZE,
            Message::DevicePoll { .. } => tag::DEVICE_POLL,
            Message::Refresh { .. } => tag::REFRESH,
            Message::SignOut { .. } => tag::SIGN_OUT,
            Message::SignedOut => tag::SIGNED_OUT,
            Message::Hello { .. } => tag::HELLO,
            Message::Welcome { .. } => tag::WELCOME,
            Message::AppsChanged { .. } => tag::APPS_CHANGED,
            Message::Ping { .. } => tag::PING,
            Message::Pong { .. } => tag::PONG,
            Message::Revoked { .. } => tag::REVOKED,
            Message::Refused { .. } => tag::REFUSED,
            Message::StreamOpen { .. } => tag::STREAM_OPEN,
            Message::StreamAccepted { .. } => tag::STREAM_ACCEPTED,
        }
    }

    /// Appends the payload (without the type byte).
    pub fn write_payload(&self, w: &mut Writer) {
        match self {
            Message::EnrolRequest {
                secret,
                key_alg,
                public_key,
                proof,
                agent_version,
                os,
            } => {
                w.buf.extend_from_slice(secret);
                w.u8(match key_alg {
                    KeyAlg::EcdsaP256 => 1,
                    KeyAlg::Ed25519 => 2,
                });
                w.bytes16(public_key);
                w.bytes16(proof);
                w.string(agent_version);
                w.string(os);
            }
            Message::Certificate {
                certificate,
                expires_at,
            } => {
                w.bytes32(certificate);
                w.u64(*expires_at);
            }
            Message::Renew => {}
            Message::SignIn {
                username,
                password,
                totp,
            } => {
                w.string(username);
                w.string(password);
                w.bool(totp.is_some());
                if let Some(t) = totp {
                    w.string(t);
                }
            }
            Message::Tokens {
                access_token,
                refresh_token,
                expires_in,
            } => {
                w.string(access_token);
                w.string(refresh_token);
                w.u32(*expires_in);
            }
            Message::SsoStart { port } => w.u16(*port),
            Message::SsoAuthorize { url, ports } => {
                w.string(url);
                let ports = &ports[..ports.len().min(limits::PORTS)];
                w.u16(ports.len() as u16);
                for p in ports {
                    w.u16(*p);
                }
            }
            Message::SsoFinish { code, state } => {
                w.string(code);
                w.string(state);
            }
            Message::SsoTokens {
                username,
                access_token,
                refresh_token,
                expires_in,
            } => {
                w.string(username);
                w.string(access_token);
                w.string(refresh_token);
                w.u32(*expires_in);
            }
            Message::DeviceStart => {}
            Message::DeviceAuthorize {
                handle,
                user_code,
                verification_uri,
                verification_uri_complete,
                expires_in,
                interval,
            } => {
                w.string(handle);
                w.string(user_code);
                w.string(verification_uri);
                w.string(verification_uri_complete);
                w.u32(*expires_in);
                w.u32(*interval);
            }
            Message::DevicePoll { handle } => w.string(handle),
            Message::Refresh { refresh_token } | Message::SignOut { refresh_token } => {
                w.string(refresh_token)
            }
            Message::SignedOut => {}
            Message::Hello {
                version,
                access_token,
                agent_version,
                os,
            } => {
                w.u16(*version);
                w.string(access_token);
                w.string(agent_version);
                w.string(os);
            }
            Message::Welcome {
                session_id,
                apps,
                addrs,
            } => {
                w.string(session_id);
                write_apps(w, apps);
                let details = any_details(apps);
                if !addrs.is_empty() || details {
                    let addrs = &addrs[..addrs.len().min(limits::ADDRESSES)];
                    w.u16(addrs.len() as u16);
                    for a in addrs {
                        w.string(a);
                    }
                }
                if details {
                    write_details(w, apps);
                }
            }
            Message::AppsChanged { apps } => {
                write_apps(w, apps);
                if any_details(apps) {
                    write_details(w, apps);
                }
            }
            Message::Ping { nonce } | Message::Pong { nonce } => w.u64(*nonce),
            Message::Revoked { reason } => w.string(reason),
            Message::Refused { code, message } => {
                w.u16(*code as u16);
                w.string(message);
            }
            Message::StreamOpen { app, request_id } => {
                w.string(app);
                w.u64(*request_id);
            }
            Message::StreamAccepted { request_id } => w.u64(*request_id),
        }
    }

    /// Decodes one message from its type byte and payload; the payload must
    /// be consumed exactly.
    pub fn decode(tag: u8, payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let msg = match tag {
            tag::ENROL_REQUEST => {
                let mut secret = [0u8; SECRET_LEN];
                for b in &mut secret {
                    *b = r.u8()?;
                }
                let key_alg = match r.u8()? {
                    1 => KeyAlg::EcdsaP256,
                    2 => KeyAlg::Ed25519,
                    _ => return Err(DecodeError::BadValue("key algorithm")),
                };
                Message::EnrolRequest {
                    secret,
                    key_alg,
                    public_key: r.bytes16(limits::PUBLIC_KEY)?.to_vec(),
                    proof: r.bytes16(limits::SIGNATURE)?.to_vec(),
                    agent_version: r.string(limits::VERSION)?,
                    os: r.string(limits::VERSION)?,
                }
            }
            tag::CERTIFICATE => Message::Certificate {
                certificate: r.bytes32(limits::CERTIFICATE)?.to_vec(),
                expires_at: r.u64()?,
            },
            tag::RENEW => Message::Renew,
            tag::SIGN_IN => {
                let username = r.string(limits::NAME)?;
                let password = r.string(limits::PASSWORD)?;
                let totp = if r.bool()? {
                    Some(r.string(limits::NAME)?)
                } else {
                    None
                };
                Message::SignIn {
                    username,
                    password,
                    totp,
                }
            }
            tag::TOKENS => Message::Tokens {
                access_token: r.string(limits::TOKEN)?,
                refresh_token: r.string(limits::TOKEN)?,
                expires_in: r.u32()?,
            },
            tag::SSO_START => Message::SsoStart { port: r.u16()? },
            tag::SSO_AUTHORIZE => {
                let url = r.string(limits::URL)?;
                let n = usize::from(r.u16()?);
                if n > limits::PORTS {
                    return Err(DecodeError::TooLong {
                        len: n,
                        max: limits::PORTS,
                    });
                }
                let ports = (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?;
                Message::SsoAuthorize { url, ports }
            }
            tag::SSO_FINISH => Message::SsoFinish {
                code: r.string(limits::CODE)?,
                state: r.string(limits::STATE)?,
            },
            tag::SSO_TOKENS => Message::SsoTokens {
                username: r.string(limits::NAME)?,
                access_token: r.string(limits::TOKEN)?,
                refresh_token: r.string(limits::TOKEN)?,
                expires_in: r.u32()?,
            },
            tag::DEVICE_START => Message::DeviceStart,
            tag::DEVICE_AUTHORIZE => Message::DeviceAuthorize {
                handle: r.string(limits::STATE)?,
                user_code: r.string(limits::USER_CODE)?,
                verification_uri: r.string(limits::URL)?,
                verification_uri_complete: r.string(limits::URL)?,
                expires_in: r.u32()?,
                interval: r.u32()?,
            },
            tag::DEVICE_POLL => Message::DevicePoll {
                handle: r.string(limits::STATE)?,
            },
            tag::REFRESH => Message::Refresh {
                refresh_token: r.string(limits::TOKEN)?,
            },
            tag::SIGN_OUT => Message::SignOut {
                refresh_token: r.string(limits::TOKEN)?,
            },
            tag::SIGNED_OUT => Message::SignedOut,
            tag::HELLO => Message::Hello {
                version: r.u16()?,
                access_token: r.string(limits::TOKEN)?,
                agent_version: r.string(limits::VERSION)?,
                os: r.string(limits::VERSION)?,
            },
            tag::WELCOME => {
                let session_id = r.string(limits::NAME)?;
                let mut apps = read_apps(&mut r)?;
                let addrs = if r.remaining() > 0 {
                    read_addrs(&mut r)?
                } else {
                    Vec::new()
                };
                if r.remaining() > 0 {
                    read_details(&mut r, &mut apps)?;
                }
                Message::Welcome {
                    session_id,
                    apps,
                    addrs,
                }
            }
            tag::APPS_CHANGED => {
                let mut apps = read_apps(&mut r)?;
                if r.remaining() > 0 {
                    read_details(&mut r, &mut apps)?;
                }
                Message::AppsChanged { apps }
            }
            tag::PING => Message::Ping { nonce: r.u64()? },
            tag::PONG => Message::Pong { nonce: r.u64()? },
            tag::REVOKED => Message::Revoked {
                reason: r.string(limits::MESSAGE)?,
            },
            tag::REFUSED => Message::Refused {
                code: ErrorCode::from_u16(r.u16()?)?,
                message: r.string(limits::MESSAGE)?,
            },
            tag::STREAM_OPEN => Message::StreamOpen {
                app: r.string(limits::NAME)?,
                request_id: r.u64()?,
            },
            tag::STREAM_ACCEPTED => Message::StreamAccepted {
                request_id: r.u64()?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}
