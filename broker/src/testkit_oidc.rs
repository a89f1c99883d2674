//! The test OpenID provider (`tests/oidc/provider.mjs` on the certified
//! `oidc-provider` package) and a cookie-keeping browser stand-in (curl)
//! that signs a person in on its login page.
//!
//! [`Provider::start`] returns `None`, having printed what was skipped and
//! why, when node or the package is missing (`tests/oidc/install.sh`
//! installs it; `.ci/run` calls that).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running provider, stopped when dropped.
pub struct Provider {
    pub issuer: String,
    pub port: u16,
    child: Child,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.issuer)
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the broker crate sits in the workspace")
        .to_owned()
}

/// Where the package is installed.
pub fn provider_dir() -> PathBuf {
    std::env::var_os("OIDC_PROVIDER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
                .join(".cache/lanyard-oidc-provider")
        })
}

/// Options for one provider.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// JSON: {"alice": {"password": "...", "groups": [...]}}.
    pub users: serde_json::Value,
    pub redirect_ports: Vec<u16>,
    /// 0: any free port.
    pub port: u16,
    pub id_token_ttl_secs: u32,
    /// More redirect URIs for the client (the web console's callback).
    pub extra_redirects: Vec<String>,
    /// Offer the device authorization grant (RFC 8628).
    pub device_flow: bool,
    pub device_code_ttl_secs: u32,
}

impl ProviderOptions {
    pub fn new(users: serde_json::Value) -> Self {
        ProviderOptions {
            users,
            redirect_ports: vec![53682, 53683, 53684],
            port: 0,
            id_token_ttl_secs: 300,
            extra_redirects: Vec::new(),
            device_flow: true,
            device_code_ttl_secs: 600,
        }
    }
}

impl Provider {
    /// Starts the provider, or says why it cannot and returns `None`.
    pub fn start(test: &str, options: &ProviderOptions) -> Option<Provider> {
        let dir = provider_dir();
        if Command::new("node").arg("--version").output().is_err() {
            println!("SKIPPED {test}: node is not installed (the OpenID Connect tests need it; .ci/run installs oidc-provider)");
            return None;
        }
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            println!(
                "SKIPPED {test}: oidc-provider is not installed in {} (run tests/oidc/install.sh)",
                dir.display()
            );
            return None;
        }
        let ports = options
            .redirect_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/oidc/provider.mjs"))
            .env("OIDC_PROVIDER_DIR", &dir)
            .env("OIDC_PORT", options.port.to_string())
            .env("OIDC_USERS", options.users.to_string())
            .env("OIDC_REDIRECT_PORTS", ports)
            .env("OIDC_ID_TOKEN_TTL", options.id_token_ttl_secs.to_string())
            .env("OIDC_EXTRA_REDIRECTS", options.extra_redirects.join(","))
            .env(
                "OIDC_DEVICE_FLOW",
                if options.device_flow { "1" } else { "0" },
            )
            .env(
                "OIDC_DEVICE_CODE_TTL",
                options.device_code_ttl_secs.to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading: a closed pipe would stop the provider.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("the test OpenID provider did not start within 20 s");
            }
        };
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).expect("the provider prints its issuer");
        let issuer = v["issuer"].as_str().expect("issuer").to_owned();
        let port = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("issuer port");
        Some(Provider {
            issuer,
            port,
            child,
        })
    }

    /// Changes a user at the provider (groups, disabled), through the test
    /// provider's admin endpoint.
    pub fn change_user(&self, name: &str, change: serde_json::Value) {
        let out = Command::new("curl")
            .args(["-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", "content-type: application/json", "-d"])
            .arg(change.to_string())
            .arg(format!("{}/test-admin/users/{name}", self.issuer))
            .output()
            .expect("curl runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "204",
            "changing {name} at the provider"
        );
    }

    /// Stops the provider now.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Follows `auth_url` as a browser would (curl, keeping cookies), posting
/// `user`/`password` on the provider's login page, until the provider
/// redirects to a URL outside itself: that URL (the loopback callback, not
/// fetched) or the error the provider showed.
pub fn browser_sign_in(auth_url: &str, user: &str, password: &str) -> Result<String, String> {
    let jar = tempfile_path("jar");
    let body = tempfile_path("body");
    let issuer_prefix = {
        let u = auth_url.split('/').take(3).collect::<Vec<_>>().join("/");
        format!("{u}/")
    };
    let mut next = auth_url.to_owned();
    let mut post: Option<String> = None;
    let result = (|| {
        for _ in 0..10 {
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "-m", "10", "-c"])
                .arg(&jar)
                .arg("-b")
                .arg(&jar)
                .arg("-o")
                .arg(&body)
                .args(["-w", "%{http_code} %{redirect_url}"]);
            if let Some(form) = post.take() {
                cmd.args(["--data-raw", &form]);
            }
            let out = cmd.arg(&next).output().map_err(|e| format!("curl: {e}"))?;
            let status = String::from_utf8_lossy(&out.stdout).to_string();
            let (code, location) = status.split_once(' ').unwrap_or((&status, ""));
            if !location.is_empty() {
                if !location.starts_with(&issuer_prefix) {
                    return Ok(location.to_owned());
                }
                next = location.to_owned();
                continue;
            }
            let page = std::fs::read_to_string(&body).unwrap_or_default();
            if code == "200" && next.contains("/interaction/") && page.contains("<form") {
                let form = format!(
                    "login={}&password={}",
                    form_encode(user),
                    form_encode(password)
                );
                post = Some(form);
                next = format!("{next}/login");
                continue;
            }
            return Err(format!(
                "the provider answered {code} at {next}: {} {}",
                page.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Err("too many redirects".into())
    })();
    let _ = std::fs::remove_file(&jar);
    let _ = std::fs::remove_file(&body);
    result
}

/// The value of the hidden input `name` in an HTML page.
fn hidden_value(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\""))?;
    let start = page[..at].rfind('<')?;
    let end = at + page[at..].find('>')?;
    let tag = &page[start..end];
    let v = tag.split("value=\"").nth(1)?;
    Some(v.split('"').next()?.to_owned())
}

/// The `action` of the form with id `form` in an HTML page, made absolute.
fn form_action(page: &str, form: &str, origin: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{form}\""))?;
    let tag_end = at + page[at..].find('>')?;
    let action = page[at..tag_end]
        .split("action=\"")
        .nth(1)?
        .split('"')
        .next()?;
    Some(if action.starts_with("http") {
        action.to_owned()
    } else {
        format!("{origin}{action}")
    })
}

/// Signs `user` in on the provider's device verification page as a person
/// would in a browser (curl, keeping cookies): opens `verification_uri`,
/// enters `user_code`, confirms (or, with `abort`, aborts), then signs in
/// on the login page. The page the provider ends on, or what went wrong.
pub fn device_sign_in(
    verification_uri: &str,
    user_code: &str,
    user: &str,
    password: &str,
    abort: bool,
) -> Result<String, String> {
    let jar = tempfile_path("jar");
    let body = tempfile_path("body");
    let origin = verification_uri
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    let fetch = |url: &str, form: Option<String>| -> Result<(String, String, String), String> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-m", "10", "-c"])
            .arg(&jar)
            .arg("-b")
            .arg(&jar)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code} %{redirect_url}"]);
        if let Some(form) = form {
            cmd.args(["--data-raw", &form]);
        }
        let out = cmd.arg(url).output().map_err(|e| format!("curl: {e}"))?;
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        let (code, location) = status.split_once(' ').unwrap_or((&status, ""));
        let page = std::fs::read_to_string(&body).unwrap_or_default();
        Ok((code.to_owned(), location.to_owned(), page))
    };
    let result = (|| {
        let (_, _, page) = fetch(verification_uri, None)?;
        let action = form_action(&page, "op.deviceInputForm", &origin)
            .ok_or_else(|| format!("no code input form at {verification_uri}: {page}"))?;
        let xsrf = hidden_value(&page, "xsrf").ok_or("no xsrf on the code page")?;
        let form = format!(
            "xsrf={}&user_code={}",
            form_encode(&xsrf),
            form_encode(user_code)
        );
        let (_, _, page) = fetch(&action, Some(form))?;
        let action = form_action(&page, "op.deviceConfirmForm", &origin)
            .ok_or_else(|| format!("the code was not taken: {page}"))?;
        let xsrf = hidden_value(&page, "xsrf").ok_or("no xsrf on the confirm page")?;
        let code = hidden_value(&page, "user_code").ok_or("no code on the confirm page")?;
        let mut form = format!(
            "xsrf={}&user_code={}&confirm=yes",
            form_encode(&xsrf),
            form_encode(&code)
        );
        if abort {
            form.push_str("&abort=yes");
        }
        let mut next = action;
        let mut post = Some(form);
        for _ in 0..12 {
            let (code, location, page) = fetch(&next, post.take())?;
            if !location.is_empty() {
                next = location;
                continue;
            }
            if code == "200" && next.contains("/interaction/") && page.contains("<form") {
                post = Some(format!(
                    "login={}&password={}",
                    form_encode(user),
                    form_encode(password)
                ));
                next = format!("{next}/login");
                continue;
            }
            return Ok(page);
        }
        Err("too many redirects".into())
    })();
    let _ = std::fs::remove_file(&jar);
    let _ = std::fs::remove_file(&body);
    result
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn tempfile_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lanyard-oidc-{what}-{}", crate::secrets::new_id()))
}

/// `code` and `state` from a callback URL.
pub fn code_and_state(callback: &str) -> (String, String) {
    let query = callback.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let mut code = String::new();
    let mut state = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "code" => code = v,
            "state" => state = v,
            _ => {}
        }
    }
    (code, state)
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
