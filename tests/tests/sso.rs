//! Sign-in with the organisation's identity provider, end to end: a
//! certified OpenID provider (`oidc-provider`, tests/oidc/provider.mjs) on
//! 127.0.0.1, the real broker, CLI and agent; the provider's login page
//! driven by curl as a browser. Skipped, saying so, without node or the
//! package (tests/oidc/install.sh, which .ci/run calls, installs it).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_broker::testkit_oidc::{browser_sign_in, Provider, ProviderOptions};
use lanyard_e2e::world::{closed_at, ended_after, live_connection, World, READY};
use lanyard_e2e::Agent;
use serde_json::json;

const PW: &str = "provider-password-1";

/// Runs `lanyard-agent login --sso --no-browser`, signs `user` in at the
/// provider as a browser would, follows the redirect to the agent's
/// loopback listener; the agent's exit code, stdout and stderr.
fn login_sso(agent: &Agent, user: &str) -> (i32, String, String) {
    let mut child = agent
        .command()
        .args(["login", "--sso", "--no-browser"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let url = url.trim().to_owned();
    let mut out = String::new();
    if url.starts_with("http://127.0.0.1:") {
        let callback = browser_sign_in(&url, user, PW).unwrap();
        // The browser follows the redirect to the agent.
        let page = Command::new("curl")
            .args(["-sS", "-m", "30", &callback])
            .output()
            .unwrap();
        out.push_str(&String::from_utf8_lossy(&page.stdout));
    } else {
        out.push_str(&url);
    }
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), format!("{out}\n{rest}"), err)
}

/// A provider with `f.jones` (in `grp-fin`) and `o.other`; a broker whose
/// `[oidc]` points at it (redirect ports `ports`, `provision`, a re-check
/// at every refresh), group `finance` mapped from `grp-fin`, app
/// `fin-echo` for finance, and an agent enrolled on pool laptop LT-9
/// (group finance). `None` when the provider cannot run here.
fn setup(test: &str, ports: [u16; 2]) -> Option<(Provider, World, Agent)> {
    let mut options = ProviderOptions::new(json!({
        "f.jones": {"password": PW, "groups": ["grp-fin", "grp-other"]},
        "o.other": {"password": PW, "groups": ["grp-other"]},
    }));
    options.redirect_ports = ports.to_vec();
    let provider = Provider::start(test, &options)?;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"lanyard\"\nprovision = true\nredirect_ports = [{}, {}]\nrecheck_every = \"1s\"\n",
            provider.issuer, ports[0], ports[1]
        ),
    )
    .unwrap();
    let w = World::in_dir(tmp, &["--config", config.to_str().unwrap()], &[]);
    let b = &w.broker;
    let added = b
        .lanyard(
            &["groups", "add", "finance", "--idp-group", "grp-fin"],
            None,
            None,
        )
        .ok();
    assert!(added.stdout.contains("grp-fin"), "{}", added.stdout);
    let echo = format!("127.0.0.1:{}", w.echo_port);
    b.lanyard(
        &[
            "apps",
            "add",
            "fin-echo",
            "--target",
            &echo,
            "--allow-group",
            "finance",
            "--device-kind",
            "any",
        ],
        None,
        None,
    )
    .ok();
    b.lanyard(
        &["devices", "add", "LT-9", "--serial", "S9", "--model", "T14"],
        None,
        None,
    )
    .ok();
    b.lanyard(
        &["devices", "mark", "LT-9", "--pool", "finance"],
        None,
        None,
    )
    .ok();
    let agent = Agent::new(w.tmp.path().join("lt9"));
    let code = w.code(&["--device", "LT-9"]);
    agent.run(&["enroll", &code], None).ok();
    Some((provider, w, agent))
}

/// Makes the agent's next refresh come within seconds, runs `up`, opens a
/// live connection to `fin-echo`, applies `change` to f.jones at the
/// provider, and waits for the tunnel to close and the agent to say why.
fn up_then_cut(
    agent: &Agent,
    provider: &Provider,
    change: serde_json::Value,
    why: &str,
) -> lanyard_e2e::UpProcess {
    // The agent refreshes at two thirds of the life it was told, so tell it
    // the token is nearly used up.
    let tokens_path = agent.state_dir.join("tokens.json");
    let mut tokens: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tokens_path).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tokens["issued_at"] = json!(now);
    tokens["expires_at"] = json!(now + 12);
    std::fs::write(&tokens_path, serde_json::to_vec(&tokens).unwrap()).unwrap();

    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    let port = *forwards
        .get("fin-echo")
        .unwrap_or_else(|| panic!("{forwards:?}"));
    let conn = live_connection(port);
    let changed = Instant::now();
    provider.change_user("f.jones", change);
    let took = ended_after(closed_at(conn, Duration::from_secs(30)), changed, why);
    eprintln!("the live tunnel closed {took:?} after the change at the provider");
    assert!(up.wait_log(why, Duration::from_secs(10)), "{}", up.log());
    up
}

/// Enrol on pool laptop LT-9 (group finance, mapped from the provider's
/// `grp-fin`), `login --sso` (the person is made at first sign-in), `up`,
/// reach the finance app; the person leaves the group at the provider and
/// the next refresh cuts the live tunnel. A person in no mapped group is
/// refused with an audit row.
#[test]
fn sso_sign_in_reaches_an_app_by_group_and_a_leaver_is_cut_off() {
    // Redirect ports of this test's own (below the ephemeral range, so no
    // outgoing connection holds one); the first is taken, so the agent
    // falls back to the second.
    let ports = [29691u16, 29692];
    let Some((provider, w, agent)) = setup("sso end to end", ports) else {
        return;
    };
    let b = &w.broker;
    let _taken = std::net::TcpListener::bind(("127.0.0.1", ports[0])).unwrap();

    // Someone in no mapped group: refused, audited, nothing made.
    let (code_other, _, err) = login_sso(&agent, "o.other");
    assert_ne!(code_other, 0, "a person in no mapped group signed in");
    assert!(err.contains("no group mapped"), "{err}");
    let audit = b.audit_json("agent.signin");
    assert!(
        audit.contains("o.other") && audit.contains("denied"),
        "{audit}"
    );
    let staff = b
        .lanyard(&["staff", "list", "--json"], None, None)
        .ok()
        .stdout;
    assert!(!staff.contains("o.other"), "{staff}");

    let started = Instant::now();
    let (status, out, err) = login_sso(&agent, "f.jones");
    assert_eq!(status, 0, "login --sso failed: {out} {err}");
    assert!(
        out.contains("Signed in to Lanyard as f.jones"),
        "the browser page: {out}"
    );
    assert!(out.contains("signed in as f.jones"), "{out}");
    eprintln!(
        "login --sso (browser included) took {:?}",
        started.elapsed()
    );
    // Provisioned at priority 3, a member of finance from the provider.
    let person = b
        .lanyard(&["staff", "show", "f.jones", "--json"], None, None)
        .ok()
        .stdout;
    assert!(person.contains("finance"), "{person}");
    assert!(b.audit_json("staff.provision").contains("f.jones"));

    let up = up_then_cut(
        &agent,
        &provider,
        json!({"groups": ["grp-other"]}),
        "no longer in a group mapped",
    );
    let ended = b.audit_json("agent.refresh");
    assert!(ended.contains("sso recheck"), "{ended}");

    // No provider token, code or password in a log.
    let logs = [b.log_text(), up.log()];
    for log in &logs {
        assert!(!log.contains(PW), "the password reached a log");
        assert!(
            !log.contains("code="),
            "an authorization code reached a log"
        );
    }
    drop(up);
    drop(provider);
}

/// A person disabled at the provider loses the sign-in at the next refresh:
/// the provider refuses its refresh token, and the live tunnel closes.
#[test]
fn a_person_disabled_at_the_provider_is_cut_off() {
    let Some((provider, w, agent)) = setup("sso disabled at the provider", [29695, 29696]) else {
        return;
    };
    let (status, out, err) = login_sso(&agent, "f.jones");
    assert_eq!(status, 0, "login --sso failed: {out} {err}");
    let up = up_then_cut(
        &agent,
        &provider,
        json!({"disabled": true}),
        "no longer lets this person sign in",
    );
    let ended = w.broker.audit_json("agent.refresh");
    assert!(ended.contains("sso recheck"), "{ended}");
    drop(up);
}

/// The SSO sign-in time, browser excluded: from the code handed to the
/// broker to the tokens back, as the broker logs it, over 50 sign-ins.
/// A measurement, run by hand:
/// `cargo test --release -p lanyard-e2e --test sso -- --ignored --nocapture`
#[test]
#[ignore]
fn sso_sign_in_time() {
    let Some((_provider, w, agent)) = setup("sso sign-in time", [29693, 29694]) else {
        return;
    };
    for _ in 0..50 {
        let (status, out, err) = login_sso(&agent, "f.jones");
        assert_eq!(status, 0, "{out} {err}");
    }
    let mut ms: Vec<u64> = w
        .broker
        .log_text()
        .lines()
        .filter(|l| l.contains("SSO sign-in") && !l.contains("refused"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    ms.sort_unstable();
    assert_eq!(ms.len(), 50, "one timing per sign-in");
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "SSO sign-in, code to tokens (broker side), {} sign-ins: p50 {} ms, p99 {} ms, max {} ms",
        ms.len(),
        at(0.50),
        at(0.99),
        ms[ms.len() - 1]
    );
}

/// The SSO messages from a misbehaving agent over a real device connection:
/// a redirect port the broker does not list, a made-up state, a code and
/// state used twice. Each is refused with the reason and an audit row; no
/// code reaches a log. A broker without `[oidc]` says so.
#[test]
fn sso_messages_are_checked_and_refusals_audited() {
    use lanyard_agent::state::StateDir;
    use lanyard_agent::{account, client};
    use lanyard_proto::{ErrorCode, Message};

    let ports = [29697u16, 29698];
    let Some((_provider, w, agent)) = setup("sso refusals", ports) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device = StateDir::open(&agent.state_dir).unwrap().device().unwrap();
    let (endpoint, conn) = rt.block_on(account::connect(&device)).unwrap();
    let ask = |m: Message| rt.block_on(client::request(&conn, &m));
    let refused = |r: Result<Message, client::ClientError>| match r {
        Err(client::ClientError::Refused { code, message }) => (code, message),
        other => panic!("not refused: {other:?}"),
    };

    let (code, message) = refused(ask(Message::SsoStart { port: 8080 }));
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("29697, 29698"), "{message}");
    let (code, message) = refused(ask(Message::SsoFinish {
        code: "made-up".into(),
        state: "made-up".into(),
    }));
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("unknown or expired sign-in"), "{message}");

    // A real sign-in: its code and state work once.
    let Ok(Message::SsoAuthorize { url, ports: listed }) =
        ask(Message::SsoStart { port: ports[0] })
    else {
        panic!("no URL");
    };
    assert_eq!(listed, ports.to_vec());
    let callback = browser_sign_in(&url, "f.jones", PW).unwrap();
    let (the_code, state) = lanyard_broker::testkit_oidc::code_and_state(&callback);
    let finish = || Message::SsoFinish {
        code: the_code.clone(),
        state: state.clone(),
    };
    match ask(finish()) {
        Ok(Message::SsoTokens { username, .. }) => assert_eq!(username, "f.jones"),
        other => panic!("no tokens: {other:?}"),
    }
    let (code, message) = refused(ask(finish()));
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("unknown or expired sign-in"), "{message}");
    conn.close(0u32.into(), b"done");
    rt.block_on(endpoint.wait_idle());

    let audit = w.broker.audit_json("agent.signin");
    for kind in ["port_not_configured", "bad_state"] {
        assert!(audit.contains(kind), "no audit row for {kind}: {audit}");
    }
    let log = w.broker.log_text();
    assert!(
        !log.contains(&the_code),
        "the provider's code reached the broker's log"
    );

    // A broker with no [oidc]: the agent is told so.
    let plain = World::new();
    plain.person("p.plain", "hr");
    let other = plain.agent("plain-agent", "p.plain", None);
    let device = StateDir::open(&other.state_dir).unwrap().device().unwrap();
    let (endpoint, conn) = rt.block_on(account::connect(&device)).unwrap();
    let answer = rt.block_on(client::request(&conn, &Message::SsoStart { port: 0 }));
    let (code, message) = refused(answer);
    assert_eq!(code, ErrorCode::NotFound);
    assert!(message.contains("no [oidc]"), "{message}");
    conn.close(0u32.into(), b"done");
    rt.block_on(endpoint.wait_idle());
}

/// `lanyard login --sso --no-browser`: the admin CLI signs in through the
/// provider as the agent does and prints an API token for the person; a
/// person in no mapped group is refused, audited.
#[test]
fn the_admin_cli_signs_in_with_sso() {
    let ports = [53699u16, 53700];
    let Some((_provider, w, _agent)) = setup("sso admin CLI", ports) else {
        return;
    };
    let b = &w.broker;
    let cli_sso = |user: &str| -> (i32, String, String) {
        let mut child = Command::new(lanyard_e2e::bin("lanyard"))
            .args(["login", "--sso", "--no-browser"])
            .env("LANYARD_BROKER", &b.api)
            .env("LANYARD_CA_CERT", b.data_dir.join("ca.pem"))
            .env_remove("LANYARD_TOKEN")
            .env_remove("LANYARD_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut url = String::new();
        let mut said = String::new();
        for _ in 0..5 {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                break;
            }
            said.push_str(&line);
            if line.starts_with("http://") {
                url = line.trim().to_owned();
                break;
            }
        }
        assert!(!url.is_empty(), "no sign-in address: {said}");
        let callback = browser_sign_in(&url, user, PW).unwrap();
        let page = Command::new("curl")
            .args(["-sS", "-m", "30", &callback])
            .output()
            .unwrap();
        let status = child.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        (
            status.code().unwrap_or(-1),
            out,
            format!("{}{rest}", String::from_utf8_lossy(&page.stdout)),
        )
    };
    let (code, _, err) = cli_sso("o.other");
    assert_ne!(code, 0, "a person in no mapped group got a token");
    assert!(err.contains("no group mapped"), "{err}");
    let (code, out, err) = cli_sso("f.jones");
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    assert!(token.starts_with("lyt_"), "{out}");
    assert!(err.contains("signed in as f.jones"), "{err}");
    // The token is f.jones's own: a non-admin's, refused admin work.
    let listed = b.lanyard(&["staff", "list"], Some(token), None);
    assert_ne!(listed.code, 0);
    assert!(listed.stderr.contains("admin"), "{}", listed.stderr);
    let tokens = b
        .lanyard(
            &["tokens", "list", "--user", "f.jones", "--json"],
            None,
            None,
        )
        .ok();
    assert!(tokens.stdout.contains("f.jones"), "{}", tokens.stdout);
}

/// Runs `lanyard-agent login --device-code`, reads the address and code
/// it prints, and signs `user` in on the provider's device page as a
/// browser would (`abort`: refuses there instead); the agent's exit code,
/// stdout, stderr and the page the provider ended on.
fn login_device_code(agent: &Agent, user: &str, abort: bool) -> (i32, String, String, String) {
    let mut child = agent
        .command()
        .args(["login", "--device-code"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut said = String::new();
    let mut uri = String::new();
    let mut code = String::new();
    for _ in 0..3 {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        said.push_str(&line);
        if let Some(rest) = line.strip_prefix("To sign in, open ") {
            uri = rest.trim().trim_end_matches(" on any device").to_owned();
        }
        if let Some(rest) = line.strip_prefix("and enter the code: ") {
            code = rest.trim().to_owned();
            break;
        }
    }
    let page = if uri.is_empty() || code.is_empty() {
        String::new()
    } else {
        lanyard_broker::testkit_oidc::device_sign_in(&uri, &code, user, PW, abort)
            .unwrap_or_else(|e| e)
    };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (
        status.code().unwrap_or(-1),
        format!("{said}{rest}"),
        err,
        page,
    )
}

/// `lanyard-agent login --device-code`: the agent shows the provider's
/// address and code, the person signs in there on "another device", the
/// broker's poll ends and the agent is signed in, then reaches the
/// finance app. Someone in no mapped group, or a person who refuses at the
/// provider, is refused with the reason; each refusal is audited.
#[test]
fn device_code_sign_in_from_the_agent() {
    let Some((_provider, w, agent)) = setup("sso device code", [29701, 29702]) else {
        return;
    };
    let b = &w.broker;

    let (code, out, err, page) = login_device_code(&agent, "o.other", false);
    assert_ne!(code, 0, "a person in no mapped group signed in: {out}");
    assert!(page.contains("Sign-in Success"), "{page}");
    assert!(err.contains("no group mapped"), "{err}");

    let (code, _, err, _) = login_device_code(&agent, "f.jones", true);
    assert_ne!(code, 0, "an aborted sign-in went on");
    assert!(err.contains("access_denied"), "{err}");
    let audit = b.audit_json("agent.signin");
    assert!(audit.contains("device_denied"), "{audit}");

    let (code, out, err, page) = login_device_code(&agent, "f.jones", false);
    assert_eq!(code, 0, "login --device-code failed: {out} {err}");
    assert!(page.contains("Sign-in Success"), "{page}");
    assert!(out.contains("and enter the code: "), "{out}");
    assert!(out.contains("signed in as f.jones"), "{out}");
    let person = b
        .lanyard(&["staff", "show", "f.jones", "--json"], None, None)
        .ok()
        .stdout;
    assert!(person.contains("finance"), "{person}");
    let audit = b.audit_json("agent.signin");
    assert!(
        audit.contains("f.jones") && audit.contains("subject"),
        "{audit}"
    );

    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    assert!(forwards.contains_key("fin-echo"), "{forwards:?}");
    drop(up);
    let log = b.log_text();
    assert!(log.contains("device code sign-in started"), "{log}");
    assert!(!log.contains(PW), "the password reached a log");
}

/// A role from the provider: `lanyard groups add … --grants-role admin`;
/// f.jones, put in that provider group, is an admin after `login --sso`;
/// `lanyard groups set` changes the role granted and then the mapping,
/// and at each next sign-in the role follows, down to staff (audited).
#[test]
fn a_role_comes_from_a_mapped_provider_group() {
    let Some((provider, w, agent)) = setup("sso roles", [29703, 29704]) else {
        return;
    };
    let b = &w.broker;
    // The person as the API shows them: role and the admin flag.
    let role_of = |who: &str| -> String {
        let out = Command::new("curl")
            .args(["-sS", "-m", "10", "--cacert"])
            .arg(b.data_dir.join("ca.pem"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", b.admin_token()))
            .arg(format!("{}/api/v1/staff/{who}", b.api))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        format!("{}/{}", v["role"].as_str().unwrap_or("?"), v["admin"])
    };
    let added = b
        .lanyard(
            &[
                "groups",
                "add",
                "it-admins",
                "--idp-group",
                "grp-admins",
                "--grants-role",
                "admin",
            ],
            None,
            None,
        )
        .ok();
    assert!(added.stdout.contains("granting admin"), "{}", added.stdout);
    // A role must come with a provider group.
    let refused = b.lanyard(
        &[
            "groups",
            "set",
            "finance",
            "--no-idp-groups",
            "--grants-role",
            "ict",
        ],
        None,
        None,
    );
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("--idp-group"), "{}", refused.stderr);

    provider.change_user("f.jones", json!({"groups": ["grp-fin", "grp-admins"]}));
    let (status, out, err) = login_sso(&agent, "f.jones");
    assert_eq!(status, 0, "{out} {err}");
    assert_eq!(role_of("f.jones"), "admin/true");

    let set = b
        .lanyard(
            &["groups", "set", "it-admins", "--grants-role", "viewer"],
            None,
            None,
        )
        .ok();
    assert!(set.stdout.contains("granting viewer"), "{}", set.stdout);
    let (status, out, err) = login_sso(&agent, "f.jones");
    assert_eq!(status, 0, "{out} {err}");
    assert_eq!(role_of("f.jones"), "viewer/false");

    // The group now comes from another provider group: f.jones is not in
    // it, so the role granted goes at the next sign-in.
    let set = b
        .lanyard(
            &[
                "groups",
                "set",
                "it-admins",
                "--idp-group",
                "grp-it",
                "--json",
            ],
            None,
            None,
        )
        .ok();
    let g: serde_json::Value = serde_json::from_str(&set.stdout).unwrap();
    assert_eq!(g["idp_groups"], json!(["grp-it"]), "{g}");
    assert_eq!(g["grants_role"], json!("viewer"), "{g}");
    let (status, out, err) = login_sso(&agent, "f.jones");
    assert_eq!(status, 0, "{out} {err}");
    assert_eq!(role_of("f.jones"), "staff/false");
    let person = b
        .lanyard(&["staff", "show", "f.jones", "--json"], None, None)
        .ok()
        .stdout;
    assert!(!person.contains("it-admins"), "{person}");

    // A role set by hand over one the provider gave is the person's own:
    // the provider granting less leaves it.
    provider.change_user("f.jones", json!({"groups": ["grp-fin", "grp-it"]}));
    let (status, out, err) = login_sso(&agent, "f.jones");
    assert_eq!(status, 0, "{out} {err}");
    assert_eq!(role_of("f.jones"), "viewer/false");
    b.lanyard(&["staff", "set", "f.jones", "--role", "admin"], None, None)
        .ok();
    provider.change_user("f.jones", json!({"groups": ["grp-fin"]}));
    let (status, out, err) = login_sso(&agent, "f.jones");
    assert_eq!(status, 0, "{out} {err}");
    assert_eq!(role_of("f.jones"), "admin/true");

    let audit: Vec<serde_json::Value> =
        serde_json::from_str(&b.audit_json("staff.role_from_idp")).unwrap();
    let changes = audit.iter().filter(|r| r["target"] == "f.jones").count();
    assert_eq!(changes, 4, "admin, viewer, staff, viewer: {audit:?}");
    let audit = b.audit_json("group.set");
    assert!(
        audit.contains("grp-it") && audit.contains("grp-admins"),
        "{audit}"
    );
}
