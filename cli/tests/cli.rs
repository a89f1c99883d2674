//! The `lanyard` binary against a real broker (in-process, 127.0.0.1 port 0).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::Stdio;

use lanyard_broker::state::AppState;
use lanyard_broker::{Broker, Settings};
use tokio::io::AsyncWriteExt;

struct Env {
    dir: tempfile::TempDir,
    api: String,
    quic: std::net::SocketAddr,
    ca: PathBuf,
    token: String,
    state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let broker = Broker::start(Settings::for_test(&data, None))
            .await
            .unwrap();
        let api = format!("https://{}", broker.api_addr());
        let quic = broker.quic_addr();
        let state = broker.state().clone();
        let token = std::fs::read_to_string(broker.admin_token_path())
            .unwrap()
            .trim()
            .to_owned();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let served = tokio::spawn(broker.serve(async {
            let _ = rx.await;
        }));
        Env {
            ca: data.join("ca.pem"),
            dir,
            api,
            quic,
            token,
            state,
            stop: Some(tx),
            served: Some(served),
        }
    }

    /// `lanyard ARGS` against this broker, from the temp dir, with `token`
    /// in LANYARD_TOKEN (or none set); output piped.
    fn command(&self, args: &[&str], token: Option<&str>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("LANYARD_TOKEN_FILE")
            .env("LANYARD_BROKER", &self.api)
            .env("LANYARD_CA_CERT", &self.ca)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match token {
            Some(t) => cmd.env("LANYARD_TOKEN", t),
            None => cmd.env_remove("LANYARD_TOKEN"),
        };
        cmd
    }

    async fn run_with(&self, args: &[&str], token: Option<&str>, stdin: Option<&str>) -> Output {
        let mut cmd = self.command(args, token);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        collect(child).await
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, Some(&self.token.clone()), None).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(out.code, 0, "lanyard {args:?} failed: {}", out.stderr);
        out.stdout
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all).await;
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document ({e}): {text}"))
    }

    async fn staff_count(&self) -> usize {
        self.json(&["staff", "list"])
            .await
            .as_array()
            .unwrap()
            .len()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.served.take().unwrap().await.unwrap();
    }
}

async fn collect(child: tokio::process::Child) -> Output {
    let out = child.wait_with_output().await.unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn output(mut cmd: tokio::process::Command) -> Output {
    collect(cmd.spawn().unwrap()).await
}

/// One line on stderr, non-zero exit.
fn refused(out: &Output, code: i32, needle: &str) {
    assert_eq!(
        out.code, code,
        "want exit {code}, got {}: {}",
        out.code, out.stderr
    );
    assert!(
        out.stderr.contains(needle),
        "stderr lacks {needle:?}: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_have_host_names_and_a_protocol() {
    let env = Env::start().await;
    env.ok(&["groups", "add", "hr"]).await;
    let out = env
        .ok(&[
            "apps",
            "add",
            "hr-web",
            "--target",
            "127.0.0.1:8080",
            "--host",
            "HR.Council.Internal",
            "--host",
            "hr",
            "--allow-group",
            "hr",
        ])
        .await;
    assert!(out.contains("known as hr,hr.council.internal"), "{out}");
    let apps = env.json(&["apps", "list"]).await;
    assert_eq!(
        apps[0]["hosts"],
        serde_json::json!(["hr", "hr.council.internal"])
    );
    assert_eq!(apps[0]["protocol"], "tcp");
    let table = env.ok(&["apps", "list"]).await;
    assert!(table.contains("hr,hr.council.internal"), "{table}");

    env.ok(&[
        "apps",
        "add",
        "pbx",
        "--target",
        "10.0.0.9:5060",
        "--protocol",
        "udp",
    ])
    .await;
    let apps = env.json(&["apps", "list"]).await;
    assert_eq!(apps[1]["protocol"], "udp");
    assert_eq!(apps[1]["hosts"], serde_json::json!([]));
    assert_eq!(apps[1]["flow_idle_secs"], 300, "five minutes unless said");
    env.ok(&["apps", "set", "pbx", "--flow-idle-timeout", "10m"])
        .await;
    let table = env.ok(&["apps", "list"]).await;
    assert!(table.contains("udp, idle 10m"), "{table}");

    // Each bad request is refused with its reason, and changes nothing.
    let before = env.json(&["apps", "list"]).await;
    let refused: &[(&[&str], &str)] = &[
        (
            &["apps", "set", "pbx", "--host", "hr.council.internal"],
            "already belongs to app hr-web",
        ),
        (
            &["apps", "set", "pbx", "--host", "bad_name.internal"],
            "bad host name",
        ),
        (&["apps", "set", "pbx", "--host", "hr:443"], "bad host name"),
        (
            &["apps", "set", "pbx", "--flow-idle-timeout", "2days"],
            "bad flow idle timeout",
        ),
        (
            &[
                "apps",
                "add",
                "x",
                "--target",
                "a:1",
                "--host",
                "x-.internal",
            ],
            "bad host name",
        ),
    ];
    for (args, why) in refused {
        let out = env.run(args).await;
        assert_ne!(out.code, 0, "{args:?}");
        assert!(out.stderr.contains(why), "{args:?}: {}", out.stderr);
    }
    let many: Vec<String> = (0..17).map(|i| format!("n{i}.internal")).collect();
    let mut args = vec!["apps", "set", "pbx"];
    for h in &many {
        args.extend(["--host", h.as_str()]);
    }
    let out = env.run(&args).await;
    assert!(out.stderr.contains("at most 16"), "{}", out.stderr);
    assert_eq!(env.json(&["apps", "list"]).await, before);

    // Set replaces the names; --no-hosts removes them; --protocol changes.
    env.ok(&["apps", "set", "hr-web", "--host", "people.council.internal"])
        .await;
    let apps = env.json(&["apps", "list"]).await;
    assert_eq!(
        apps[0]["hosts"],
        serde_json::json!(["people.council.internal"])
    );
    // The name hr-web gave up is free for another app.
    env.ok(&[
        "apps",
        "set",
        "pbx",
        "--host",
        "hr.council.internal",
        "--protocol",
        "tcp",
    ])
    .await;
    env.ok(&["apps", "set", "hr-web", "--no-hosts"]).await;
    let apps = env.json(&["apps", "list"]).await;
    assert_eq!(apps[0]["hosts"], serde_json::json!([]));
    assert_eq!(apps[1]["hosts"], serde_json::json!(["hr.council.internal"]));
    assert_eq!(apps[1]["protocol"], "tcp");
    // Removing an app frees its names.
    env.ok(&["apps", "remove", "pbx"]).await;
    env.ok(&["apps", "set", "hr-web", "--host", "hr.council.internal"])
        .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_adds_staff_and_apps_and_creates_a_code() {
    let env = Env::start().await;
    env.ok(&["groups", "add", "hr"]).await;
    let out = env
        .ok(&[
            "staff",
            "add",
            "j.smith",
            "--name",
            "Jo Smith",
            "--priority",
            "1",
            "--group",
            "hr",
        ])
        .await;
    assert!(out.contains("added j.smith"), "{out}");
    let staff = env.json(&["staff", "list"]).await;
    assert_eq!(staff[0]["username"], "j.smith");
    assert_eq!(staff[0]["priority"], 1);
    assert_eq!(staff[0]["groups"], serde_json::json!(["hr"]));

    env.ok(&[
        "apps",
        "add",
        "hr-system",
        "--target",
        "hr.internal:443",
        "--allow-group",
        "hr",
        "--device-kind",
        "managed",
    ])
    .await;
    let apps = env.json(&["apps", "list"]).await;
    assert_eq!(apps[0]["device_kind"], "managed");
    let table = env.ok(&["apps", "list"]).await;
    assert!(table.starts_with("APP "), "{table}");

    let code = env
        .ok(&["enroll-code", "create", "--personal", "j.smith"])
        .await;
    assert_eq!(code.lines().count(), 1, "{code}");
    let decoded = lanyard_proto::EnrolmentCode::decode(code.trim()).unwrap();
    assert_eq!(decoded.broker_addrs, vec![env.quic.to_string()]);
    assert_eq!(decoded.ca_fingerprint, env.state.ca.fingerprint());

    env.ok(&[
        "devices",
        "add",
        "LT-0001",
        "--serial",
        "SN1",
        "--model",
        "ThinkPad T14",
    ])
    .await;
    let code = env
        .ok(&[
            "enroll-code",
            "create",
            "--device",
            "LT-0001",
            "--ttl",
            "30m",
        ])
        .await;
    assert!(code.starts_with("lye1."));

    let verify = env.ok(&["audit", "verify"]).await;
    assert!(verify.contains("audit log intact"), "{verify}");
    let audit = env.json(&["audit", "list", "--action", "staff."]).await;
    assert_eq!(audit.as_array().unwrap().len(), 1);
    assert_eq!(audit[0]["actor"], "bootstrap");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let env = Env::start().await;
    env.ok(&["groups", "add", "hr"]).await;
    env.ok(&["staff", "add", "j.smith", "--name", "Jo Smith"])
        .await;
    let audit_rows = env.json(&["audit", "list"]).await.as_array().unwrap().len();

    refused(
        &env.run(&["staff", "add", "j.smith", "--name", "Again"])
            .await,
        1,
        "staff member j.smith already exists",
    );
    refused(
        &env.run(&["staff", "add", "a.jones", "--name", "A", "--group", "nope"])
            .await,
        1,
        "unknown group nope",
    );
    refused(
        &env.run(&["staff", "add", "a.jones", "--name", "A", "--priority", "7"])
            .await,
        2,
        "priority",
    );
    refused(
        &env.run(&["staff", "add", "A Jones", "--name", "A"]).await,
        1,
        "bad username",
    );
    refused(&env.run(&["staff", "list", "--bogus"]).await, 2, "--bogus");
    refused(
        &env.run(&["apps", "add", "x", "--target", "nowhere"]).await,
        1,
        "bad target",
    );
    refused(
        &env.run(&["enroll-code", "create", "--device", "LT-404"])
            .await,
        1,
        "no laptop with asset tag LT-404",
    );
    refused(
        &env.run(&[
            "enroll-code",
            "create",
            "--personal",
            "j.smith",
            "--ttl",
            "90d",
        ])
        .await,
        1,
        "ttl must be between",
    );
    refused(&env.run(&["enroll-code", "create"]).await, 2, "--device");
    refused(
        &env.run_with(&["staff", "list"], Some("lyt_wrong"), None)
            .await,
        1,
        "the token is not valid",
    );
    refused(
        &env.run_with(&["staff", "list"], None, None).await,
        2,
        "no API token",
    );
    assert_eq!(
        env.run(&["staff", "list"]).await.stderr,
        "",
        "a good command prints nothing on stderr"
    );
    assert_eq!(env.staff_count().await, 1);
    let audit = env.json(&["audit", "list"]).await;
    let denied: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "denied")
        .collect();
    // The refusals of bad input wrote nothing; the one refused for a bad
    // token is counted, and audited in aggregate when the tally is flushed.
    assert_eq!(denied.len(), 0, "{audit:#}");
    assert_eq!(audit.as_array().unwrap().len(), audit_rows);
    let written = env
        .state
        .failures
        .flush(&env.state.store, lanyard_broker::clock::now_ms())
        .await;
    assert_eq!(written, 1);
    let audit = env.json(&["audit", "list"]).await;
    let denied: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{audit:#}");
    assert_eq!(denied[0]["action"], "api.unauthorized");
    assert_eq!(denied[0]["target"], "127.0.0.1");
    assert_eq!(denied[0]["detail"]["count"], 1, "{audit:#}");
    assert_eq!(audit.as_array().unwrap().len(), audit_rows + 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_refuses_the_whole_file_naming_each_bad_row() {
    let env = Env::start().await;
    env.ok(&["groups", "add", "hr"]).await;
    env.ok(&["groups", "add", "contact-centre"]).await;
    env.ok(&["staff", "add", "existing", "--name", "E"]).await;
    // One pass names every problem: bad fields, what is already stored,
    // an unknown group (with its fix), repeats within the file, and rows
    // that cannot be read; rows are counted as rows.
    let bad = env.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "username,name,email,department,priority,groups\n\
         a.one,Ann One,ann@council.example,Revenues,1,hr\n\
         existing,Someone,,,7,planning\n\
         a.four,Four\n\
         a.one,Ann Again,,,2,\n\
         A Five,,not-an-email,,2,hr\n",
    )
    .unwrap();
    let out = env.run(&["staff", "import", bad.to_str().unwrap()]).await;
    refused(
        &out,
        1,
        "import refused: 4 bad rows, 8 problems; nothing was written",
    );
    let want = [
        "line 3: bad priority \"7\"",
        "line 3: staff member existing already exists",
        "line 3: unknown group planning: add it first with `lanyard groups add planning`",
        "line 4: has 2 fields, the header has 6",
        "line 5: username a.one is also on line 2",
        "line 6: bad username \"A Five\"",
        "line 6: name is required",
        "line 6: bad email \"not-an-email\"",
    ];
    for w in want {
        assert!(out.stderr.contains(w), "stderr lacks {w:?}: {}", out.stderr);
    }
    assert_eq!(out.stderr.lines().count(), 1 + want.len(), "{}", out.stderr);
    assert_eq!(env.staff_count().await, 1);

    let missing = env.dir.path().join("missing.csv");
    std::fs::write(&missing, "username,name,email\nx,y,z\n").unwrap();
    let out = env
        .run(&["staff", "import", missing.to_str().unwrap()])
        .await;
    refused(&out, 1, "line 1: missing column department");

    let good = env.dir.path().join("good.csv");
    std::fs::write(
        &good,
        "username,name,email,department,priority,groups\n\
         a.one,Ann One,ann@council.example,Revenues,1,hr;contact-centre\n\
         a.two,\"Two, Al\",,Housing,3,\n",
    )
    .unwrap();
    let out = env.ok(&["staff", "import", good.to_str().unwrap()]).await;
    assert!(out.contains("imported 2 staff"), "{out}");
    let shown = env.json(&["staff", "show", "a.one"]).await;
    assert_eq!(shown["groups"], serde_json::json!(["contact-centre", "hr"]));
    assert_eq!(
        env.json(&["staff", "show", "a.two"]).await["name"],
        "Two, Al"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_get_403_and_the_attempt_is_audited() {
    let env = Env::start().await;
    let out = env
        .run_with(
            &[
                "staff",
                "add",
                "j.smith",
                "--name",
                "Jo",
                "--password-stdin",
            ],
            Some(&env.token),
            Some("correct horse battery\n"),
        )
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let wrong = env
        .run_with(
            &["login", "j.smith", "--password-stdin"],
            None,
            Some("wrong password!!\n"),
        )
        .await;
    refused(&wrong, 1, "wrong username or password");
    let login = env
        .run_with(
            &["login", "j.smith", "--password-stdin"],
            None,
            Some("correct horse battery\n"),
        )
        .await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    let user_token = login.stdout.trim().to_owned();
    assert!(user_token.starts_with("lyt_"));

    let forbidden = env
        .run_with(&["staff", "list"], Some(&user_token), None)
        .await;
    refused(
        &forbidden,
        1,
        "j.smith has the role staff; this needs the role viewer, ict or admin",
    );
    let forbidden = env
        .run_with(&["audit", "verify"], Some(&user_token), None)
        .await;
    refused(&forbidden, 1, "needs the role viewer");

    let audit = env.json(&["audit", "list", "--actor", "j.smith"]).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    // The wrong password before the sign-in proved nothing: it is counted
    // and audited in aggregate, not as j.smith's.
    assert_eq!(
        actions,
        vec!["api.login", "api.forbidden", "api.forbidden"],
        "{audit:#}"
    );
    assert_eq!(audit[1]["target"], "GET /api/v1/staff");

    // Disabling the person ends their token at once, and for good.
    env.ok(&["staff", "disable", "j.smith"]).await;
    refused(
        &env.run_with(&["staff", "list"], Some(&user_token), None)
            .await,
        1,
        "revoked",
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_a_row_edited_behind_the_api() {
    let env = Env::start().await;
    for g in ["a", "b", "c"] {
        env.ok(&["groups", "add", g]).await;
    }
    env.ok(&["audit", "verify"]).await;
    sqlx::query("UPDATE audit_log SET target = 'z' WHERE seq = 2")
        .execute(env.state.store.pool())
        .await
        .unwrap();
    let out = env.run(&["audit", "verify"]).await;
    refused(&out, 1, "audit log damaged: row 2 was edited");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer_without_a_token() {
    let env = Env::start().await;
    let ca = std::fs::read(&env.ca).unwrap();
    let client = lanyard_cli::Client::new(&env.api, &ca, None).unwrap();
    let (status, body) = client
        .send(http::Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok\n"[..]));
    let (status, _) = client
        .send(http::Method::GET, "/readyz", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let _ = env.run(&["staff", "list"]).await;
    let _ = env.run_with(&["staff", "list"], Some("nope"), None).await;
    let (_, metrics) = client
        .send(http::Method::GET, "/metrics", None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics);
    assert!(text.contains("lanyard_api_auth_denied_total 1"), "{text}");
    assert!(text.contains("lanyard_store_up 1"), "{text}");

    // Closing the store makes the broker not ready, without a panic.
    env.state.store.pool().close().await;
    let (status, _) = client
        .send(http::Method::GET, "/readyz", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 503);
    let out = env.run(&["staff", "list"]).await;
    refused(&out, 1, "store is unavailable");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_tour_imports_queues_and_fulfils_in_priority_order() {
    let env = Env::start().await;
    let dir = env.dir.path();
    std::fs::write(
        dir.join("bad-laptops.csv"),
        "asset_tag,serial,model,status\nLT-1,S1,T14,in-stock\nLT-1,S2,T14,in-stock\nLT-3,S3,T14,broken\n",
    )
    .unwrap();
    let out = env
        .run(&[
            "devices",
            "import",
            dir.join("bad-laptops.csv").to_str().unwrap(),
        ])
        .await;
    refused(&out, 1, "import refused: 2 bad rows, 2 problems");
    assert!(
        out.stderr
            .contains("line 3: asset tag LT-1 is also on line 2"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("line 4: bad status \"broken\""),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.json(&["devices", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );

    std::fs::write(
        dir.join("laptops.csv"),
        "asset_tag,serial,model,status,warranty_end\nLT-1,S1,ThinkPad T14,in-stock,2028-03-31\nLT-2,S2,ThinkPad T14,in-stock,\nLT-3,S3,Latitude 5440,in-repair,\n",
    )
    .unwrap();
    env.ok(&[
        "devices",
        "import",
        dir.join("laptops.csv").to_str().unwrap(),
    ])
    .await;
    // Tags and serials already in the inventory are named in the same pass
    // as the file's own format errors.
    std::fs::write(
        dir.join("more-laptops.csv"),
        "asset_tag,serial,model,status\nLT-1,S9,ThinkPad T14,in-stock\nLT-9,S10,T14,broken\nLT-10,S2,,in-stock\nLT-11,S11,T14,in-stock\n",
    )
    .unwrap();
    let out = env
        .run(&[
            "devices",
            "import",
            dir.join("more-laptops.csv").to_str().unwrap(),
        ])
        .await;
    refused(
        &out,
        1,
        "import refused: 3 bad rows, 4 problems; nothing was written",
    );
    for w in [
        "line 2: asset tag LT-1 already exists",
        "line 3: bad status \"broken\"",
        "line 4: model is required",
        "line 4: serial S2 already exists",
    ] {
        assert!(out.stderr.contains(w), "stderr lacks {w:?}: {}", out.stderr);
    }
    assert_eq!(
        env.json(&["devices", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        3,
        "a refused import wrote rows"
    );
    std::fs::write(
        dir.join("staff.csv"),
        "username,name,email,department,priority,groups\nc.three,Cy Three,,Parks,3,\nb.one,Bea One,,Contact Centre,1,\na.two,Al Two,,Housing,2,\nd.one,Di One,,Contact Centre,1,\n",
    )
    .unwrap();
    env.ok(&["staff", "import", dir.join("staff.csv").to_str().unwrap()])
        .await;
    for u in ["c.three", "b.one", "a.two", "d.one"] {
        env.ok(&["requests", "add", u, "--reason", "working from home"])
            .await;
    }
    refused(
        &env.run(&["requests", "add", "b.one"]).await,
        1,
        "b.one already has an open laptop request",
    );
    let queue = env.json(&["requests", "list", "--open"]).await;
    let order: Vec<&str> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["username"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec!["b.one", "d.one", "a.two", "c.three"]);

    let fulfil = env.json(&["requests", "fulfil"]).await;
    let got: Vec<(&str, &str)> = fulfil["allocated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["username"].as_str().unwrap(),
                a["asset_tag"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("b.one", "LT-1"), ("d.one", "LT-2")]);
    assert_eq!(fulfil["still_queued"], 2);
    let text = env.ok(&["requests", "fulfil"]).await;
    assert!(
        text.contains("allocated 0; 2 request(s) still queued; 0 laptop(s) left in stock"),
        "{text}"
    );

    refused(
        &env.run(&["devices", "assign", "LT-1", "--to", "a.two"])
            .await,
        1,
        "laptop LT-1 is not in stock: it is allocated to b.one",
    );
    let found = env.json(&["devices", "list", "--search", "latitude"]).await;
    assert_eq!(found[0]["asset_tag"], "LT-3");
    let contact = env
        .json(&["devices", "list", "--department", "Contact Centre"])
        .await;
    assert_eq!(contact.as_array().unwrap().len(), 2);

    let csv = env.ok(&["report", "inventory", "--format", "csv"]).await;
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), "asset_tag,serial,model,status,holder,holder_name,department,allocated_since,purchase_date,warranty_end,notes");
    let lt1 = lines.next().unwrap();
    assert!(
        lt1.starts_with("LT-1,S1,ThinkPad T14,allocated,b.one,Bea One,Contact Centre,"),
        "{lt1}"
    );
    assert!(lt1.contains("2028-03-31"), "{lt1}");
    let report = env.json(&["report", "inventory"]).await;
    assert_eq!(report["by_status"]["allocated"], 2);
    assert_eq!(report["by_status"]["in-repair"], 1);

    // A lost laptop loses its agent, and the rules in memory know it
    // before the command returns.
    env.state
        .store
        .enrolled_device_insert(
            "fp-lt1",
            "managed",
            Some("LT-1"),
            None,
            i64::MAX / 2,
            "0.1.0",
            "linux",
            0,
        )
        .await
        .unwrap();
    let access_before = env.state.store.access_generation();
    let out = env
        .ok(&[
            "devices",
            "mark",
            "LT-1",
            "--status",
            "lost",
            "--note",
            "stolen from car",
        ])
        .await;
    assert!(out.contains("revoked 1 agent certificate"), "{out}");
    assert!(env.state.store.access_generation() > access_before);
    assert!(env
        .state
        .policy
        .current()
        .revoked_devices
        .contains("fp-lt1"));
    let shown = env.json(&["devices", "show", "LT-1"]).await;
    assert_eq!(shown["status"], "lost");
    assert_eq!(shown["allocations"][0]["return_condition"], "lost");
    assert!(shown["agents"][0]["revoked"].is_string());
    let history = env.json(&["devices", "history", "LT-1"]).await;
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["laptop.add", "laptop.assign", "laptop.mark"]);
    env.ok(&["audit", "verify"]).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_codes_work_once_and_repeated_failures_lock_the_username() {
    let env = Env::start().await;
    let pw = "correct horse battery\n";
    env.run_with(
        &["staff", "add", "t.user", "--name", "T", "--password-stdin"],
        Some(&env.token),
        Some(pw),
    )
    .await;
    let uri = env.ok(&["staff", "totp", "t.user"]).await;
    let secret_b32 = uri
        .trim()
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let secret = decode_base32(&secret_b32);
    let login = |totp: Option<String>| {
        let mut args = vec![
            "login".to_owned(),
            "t.user".into(),
            "--password-stdin".into(),
        ];
        if let Some(code) = totp {
            args.push("--totp".into());
            args.push(code);
        }
        args
    };
    let env_ref = &env;
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        env_ref.run_with(&refs, None, Some(pw)).await
    };
    // Without the code the answer is the same as for a wrong password: it
    // confirms nothing about the password.
    refused(&run(login(None)).await, 1, "wrong username or password");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = format!(
        "{:06}",
        lanyard_broker::auth::totp::code_at(&secret, now / 30, 6)
    );
    let ok = run(login(Some(code.clone()))).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    refused(
        &run(login(Some(code))).await,
        1,
        "wrong username or password",
    );

    // A success clears the count; the reuse above and four more failures
    // make five in a row: then even the right answer waits.
    for _ in 0..4 {
        refused(
            &run(login(Some("000000".into()))).await,
            1,
            "wrong username or password",
        );
    }
    let next = format!(
        "{:06}",
        lanyard_broker::auth::totp::code_at(&secret, now / 30 + 1, 6)
    );
    refused(&run(login(Some(next))).await, 1, "too many failed sign-ins");
    env.stop().await;
}

fn decode_base32(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u64, Vec::new());
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base32") as u64;
        value = (value << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

/// `lanyard audit list | head`: when the reader of stdout has gone, every
/// command that prints ends quietly with 0, not "Broken pipe".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_printing_command_quietly() {
    let env = Env::start().await;
    env.ok(&["groups", "add", "hr"]).await;
    env.ok(&[
        "staff", "add", "j.smith", "--name", "Jo Smith", "--group", "hr",
    ])
    .await;
    env.ok(&["devices", "add", "LT-1", "--serial", "S1", "--model", "T14"])
        .await;
    let commands: &[&[&str]] = &[
        &["audit", "list"],
        &["audit", "list", "--json"],
        &["audit", "verify"],
        &["staff", "list"],
        &["staff", "show", "j.smith"],
        &["groups", "list", "--json"],
        &["apps", "list"],
        &["devices", "list"],
        &["devices", "show", "LT-1"],
        &["devices", "history", "LT-1"],
        &["requests", "list"],
        &["report", "inventory"],
        &["report", "inventory", "--format", "json"],
        &["sessions", "list"],
        &["load"],
        &["enroll-code", "create", "--device", "LT-1"],
        &["requests", "add", "j.smith"],
    ];
    for args in commands {
        // A pipe whose read end is already closed: every write is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = env.command(args, Some(&env.token));
        cmd.stdout(writer);
        let out = output(cmd).await;
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (0, ""),
            "lanyard {args:?} with stdout closed"
        );
    }
    // The command did run: the request is queued.
    let requests = env.json(&["requests", "list", "--open"]).await;
    assert_eq!(requests[0]["username"], "j.smith", "{requests:#}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_json_nests_detail_as_an_object() {
    let env = Env::start().await;
    env.ok(&["groups", "add", "hr"]).await;
    env.ok(&[
        "staff",
        "add",
        "j.smith",
        "--name",
        "Jo",
        "--priority",
        "1",
        "--group",
        "hr",
    ])
    .await;
    let audit = env.json(&["audit", "list"]).await;
    let rows = audit.as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["detail"].is_object() || r["detail"].is_null()),
        "{audit:#}"
    );
    let add = rows.iter().find(|r| r["action"] == "staff.add").unwrap();
    assert_eq!(add["detail"]["priority"], 1, "{add:#}");
    assert_eq!(
        add["detail"]["groups"],
        serde_json::json!(["hr"]),
        "{add:#}"
    );
    // The table shows it as compact JSON, and nothing for no detail.
    let table = env.ok(&["audit", "list", "--action", "staff.add"]).await;
    assert!(table.contains(r#""priority":1"#), "{table}");
    let table = env.ok(&["audit", "list"]).await;
    assert!(!table.contains("null"), "{table}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_a_usage_mistake_and_an_empty_token_is_no_token() {
    let env = Env::start().await;
    let out = env
        .run(&["--broker", "http://127.0.0.1:8443", "staff", "list"])
        .await;
    refused(&out, 2, "must start with https://");
    let mut cmd = env.command(&["staff", "list"], Some(&env.token));
    cmd.env("LANYARD_BROKER", env.api.replace("https://", "http://"));
    refused(&output(cmd).await, 2, "must start with https://");

    // LANYARD_TOKEN= falls back to the token file, as if it were unset...
    let mut cmd = env.command(&["staff", "list", "--json"], Some(""));
    cmd.env(
        "LANYARD_TOKEN_FILE",
        env.dir.path().join("data/admin-token"),
    );
    let out = output(cmd).await;
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "[]");
    // ...and with no token file either, it is no token: a usage mistake.
    refused(
        &env.run_with(&["staff", "list"], Some(""), None).await,
        2,
        "no API token",
    );
    refused(
        &env.run_with(&["staff", "list"], Some("  "), None).await,
        2,
        "no API token",
    );
    env.stop().await;
}

/// Text that came from outside (a username tried at sign-in, an agent's
/// version and OS) cannot steer the terminal: the table and text output show
/// its control characters as escapes; `--json` keeps it exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_outside_is_escaped_for_the_terminal_and_exact_in_json() {
    let env = Env::start().await;
    let steers = |s: &str| s.chars().any(|c| c.is_control() && c != '\n');

    // A failed sign-in with a username that is no username: counted, and
    // audited in aggregate with a short, printable example of what was tried.
    let tried = "mallory\u{1b}[2j\r\u{9b}31mroot";
    let out = env
        .run_with(
            &["login", tried, "--password-stdin"],
            None,
            Some("not-the-password-1\n"),
        )
        .await;
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(!steers(&out.stderr), "{:?}", out.stderr);
    env.state
        .failures
        .flush(&env.state.store, lanyard_broker::clock::now_ms())
        .await;
    let table = env.ok(&["audit", "list"]).await;
    assert!(!steers(&table), "{table:?}");
    let rows = env.json(&["audit", "list"]).await;
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "signin")
        .unwrap_or_else(|| panic!("{rows:#}"));
    assert_eq!(row["actor"], "anonymous", "{row:#}");
    assert_eq!(row["detail"]["example"], "mallory?[2j??31mroot", "{row:#}");

    // An agent's version and OS, as it sent them, in `devices show`.
    env.ok(&[
        "devices", "add", "LT-9", "--serial", "S9", "--model", "ThinkPad",
    ])
    .await;
    env.state
        .store
        .enrolled_device_insert(
            "fp-lt9",
            "managed",
            Some("LT-9"),
            None,
            i64::MAX / 2,
            "0.1\u{1b}]0;owned\u{7}",
            "linux\u{1b}[2J\rWindows",
            0,
        )
        .await
        .unwrap();
    let show = env.ok(&["devices", "show", "LT-9"]).await;
    assert!(
        show.contains(r"version / os   0.1\u{1b}]0;owned\u{7} / linux\u{1b}[2J\rWindows"),
        "{show}"
    );
    assert!(!steers(&show), "{show:?}");
    let json = env.json(&["devices", "show", "LT-9"]).await;
    assert_eq!(
        json["agents"][0]["os"], "linux\u{1b}[2J\rWindows",
        "{json:#}"
    );
    assert_eq!(json["agents"][0]["agent_version"], "0.1\u{1b}]0;owned\u{7}");
    env.stop().await;
}

/// A laptop whose text would be a formula in a spreadsheet is exported as
/// text: the CSV cell starts with `'`; the JSON report is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_csv_cells_that_would_be_formulas_start_with_a_quote() {
    let env = Env::start().await;
    let formula = "=HYPERLINK(\"http://x\")";
    env.ok(&[
        "devices", "add", "LT-7", "--serial", "S7", "--model", formula, "--notes", "+1-2",
    ])
    .await;
    let csv = env.ok(&["report", "inventory", "--format", "csv"]).await;
    let row = csv.lines().nth(1).unwrap();
    assert!(
        row.starts_with(r#"LT-7,S7,"'=HYPERLINK(""http://x"")",in-stock,"#),
        "{csv}"
    );
    assert!(row.ends_with(",'+1-2"), "{csv}");
    let report = env.json(&["report", "inventory"]).await;
    assert_eq!(report["laptops"][0]["model"], formula, "{report:#}");
    assert_eq!(report["laptops"][0]["notes"], "+1-2", "{report:#}");
    env.stop().await;
}

/// Guessing enrolment codes costs the broker a lookup: no audit row each,
/// no wait on the audit chain; one address that keeps guessing waits, and
/// the guesses are audited in aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_enrolment_codes_are_counted_not_audited_one_by_one() {
    let env = Env::start().await;
    let rows_before = env.json(&["audit", "list", "--limit", "1000"]).await;
    let rows_before = rows_before.as_array().unwrap().len();
    let tmp = tempfile::tempdir().unwrap();
    let guesses = lanyard_broker::auth::signin::MAX_FAILURES_PER_ADDRESS as usize + 5;
    let mut refused_for_address = 0;
    for i in 0..guesses {
        let code = lanyard_proto::EnrolmentCode {
            broker_addrs: vec![env.quic.to_string()],
            ca_fingerprint: env.state.ca.fingerprint(),
            secret: [i as u8; lanyard_proto::enrol::SECRET_LEN],
        };
        let dir = lanyard_agent::state::StateDir::open(&tmp.path().join(format!("g{i}"))).unwrap();
        let err = lanyard_agent::account::enrol(&dir, &code)
            .await
            .unwrap_err();
        if err.to_string().contains("too many failed enrolments") {
            refused_for_address += 1;
        }
    }
    assert_eq!(refused_for_address, 5, "the address waits after the limit");
    let rows_now = env.json(&["audit", "list", "--limit", "1000"]).await;
    assert_eq!(
        rows_now.as_array().unwrap().len(),
        rows_before,
        "no row per guess"
    );
    let written = env
        .state
        .failures
        .flush(&env.state.store, lanyard_broker::clock::now_ms())
        .await;
    assert_eq!(written, 1);
    let rows = env.json(&["audit", "list", "--limit", "1000"]).await;
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "enrol_code.consume")
        .unwrap_or_else(|| panic!("{rows:#}"));
    assert_eq!(row["target"], "127.0.0.1");
    assert_eq!(row["detail"]["count"], guesses, "{row:#}");
    env.stop().await;
}
