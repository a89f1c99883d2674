//! `lanyard --json`: every leaf command prints one JSON document on
//! stdout (removes and kills included), and a failure prints one JSON
//! object on stderr, `{"error": {"code", "message", "status"}}`.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use clap::CommandFactory;
use lanyard_e2e::world::{World, PASSWORD, READY};
use serde_json::Value;

/// Every leaf command of `lanyard` ("staff add", "load", ...), hidden ones
/// too.
fn leaves() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut BTreeSet<String>) {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.insert(path.trim().to_owned());
        }
        for s in subs {
            walk(s, &format!("{path} {}", s.get_name()), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&lanyard_cli::Cli::command(), "", &mut out);
    out
}

struct Script<'a> {
    w: &'a World,
    leaves: BTreeSet<String>,
    covered: BTreeSet<String>,
}

impl Script<'_> {
    /// Runs `lanyard --json ARGS`, which must succeed and print exactly one
    /// JSON document on stdout; that document.
    fn run(&mut self, args: &[&str], stdin: Option<&str>) -> Value {
        let leaf = (1..=args.len())
            .map(|n| args[..n].join(" "))
            .find(|p| self.leaves.contains(p))
            .unwrap_or_else(|| panic!("{args:?} names no leaf command"));
        self.covered.insert(leaf);
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.w.broker.lanyard(&all, None, stdin);
        assert_eq!(out.code, 0, "lanyard {args:?}: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "lanyard --json {args:?} printed no JSON document ({e}):\n{}",
                out.stdout
            )
        })
    }
}

#[test]
fn every_command_prints_json_under_json() {
    let w = World::new();
    let mut s = Script {
        w: &w,
        leaves: leaves(),
        covered: BTreeSet::new(),
    };
    let tmp = w.tmp.path();
    let pw = format!("{PASSWORD}\n");

    s.run(&["groups", "add", "ops"], None);
    let set = s.run(
        &[
            "groups",
            "set",
            "ops",
            "--idp-group",
            "grp-ops",
            "--grants-role",
            "viewer",
        ],
        None,
    );
    assert_eq!(set["grants_role"], "viewer", "{set}");
    s.run(
        &[
            "groups",
            "set",
            "ops",
            "--no-idp-groups",
            "--grants-role",
            "none",
        ],
        None,
    );
    s.run(&["groups", "list"], None);
    let added = s.run(
        &[
            "staff", "add", "j.smith", "--name", "Jo Smith", "--group", "hr",
        ],
        None,
    );
    assert_eq!(added["username"], "j.smith");
    s.run(
        &["staff", "password", "j.smith", "--password-stdin"],
        Some(&pw),
    );
    let staff_csv = tmp.join("staff.csv");
    std::fs::write(
        &staff_csv,
        "username,name,email,department,priority,groups\nt.temp,Tem Porary,,,3,hr\n",
    )
    .unwrap();
    s.run(&["staff", "import", staff_csv.to_str().unwrap()], None);
    s.run(&["staff", "list"], None);
    s.run(&["staff", "show", "j.smith"], None);
    s.run(&["staff", "totp", "j.smith"], None);
    let off = s.run(&["staff", "totp", "j.smith", "--disable"], None);
    assert_eq!(off["totp"], false, "{off}");
    let set = s.run(&["staff", "set", "t.temp", "--priority", "1"], None);
    assert_eq!(set["priority"], 1, "{set}");
    s.run(&["staff", "disable", "t.temp"], None);
    s.run(&["staff", "enable", "t.temp"], None);
    let left = s.run(&["staff", "leave", "t.temp"], None);
    assert_eq!(left["disabled"], true, "{left}");
    s.run(&["staff", "remove", "t.temp"], None);

    s.run(
        &[
            "apps",
            "add",
            "wiki",
            "--target",
            "127.0.0.1:9",
            "--allow-group",
            "ops",
        ],
        None,
    );
    s.run(&["apps", "set", "wiki", "--device-kind", "personal"], None);
    s.run(&["apps", "list"], None);
    let removed = s.run(&["apps", "remove", "wiki"], None);
    assert_eq!(removed["removed"], true, "{removed}");
    let removed = s.run(&["groups", "remove", "ops"], None);
    assert_eq!(removed["removed"], true, "{removed}");

    let code = s.run(&["enroll-code", "create", "--personal", "j.smith"], None);
    s.run(&["enroll-code", "list"], None);
    s.run(
        &["enroll-code", "cancel", code["id"].as_str().unwrap()],
        None,
    );

    s.run(&["login", "j.smith", "--password-stdin"], Some(&pw));
    let tokens = s.run(&["tokens", "list", "--user", "j.smith"], None);
    s.run(
        &["tokens", "revoke", tokens[0]["id"].as_str().unwrap()],
        None,
    );

    s.run(
        &["devices", "add", "LT-9", "--serial", "S9", "--model", "T14"],
        None,
    );
    let laptops_csv = tmp.join("laptops.csv");
    std::fs::write(
        &laptops_csv,
        "asset_tag,serial,model,status\nLT-10,S10,T14,in-stock\n",
    )
    .unwrap();
    s.run(&["devices", "import", laptops_csv.to_str().unwrap()], None);
    s.run(&["devices", "list"], None);
    s.run(&["devices", "assign", "LT-9", "--to", "j.smith"], None);
    s.run(&["devices", "show", "LT-9"], None);
    s.run(&["devices", "return", "LT-9"], None);
    s.run(&["devices", "mark", "LT-9", "--status", "in-repair"], None);
    s.run(&["devices", "history", "LT-9"], None);
    s.run(&["devices", "revoke", "LT-10", "--reason", "test"], None);

    s.run(&["requests", "add", "j.smith"], None);
    s.run(&["requests", "list"], None);
    s.run(&["requests", "fulfil"], None);
    s.run(&["requests", "add", "j.smith"], None);
    let cancelled = s.run(&["requests", "cancel", "j.smith"], None);
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");

    // A live session to list and kill, on a personal device to revoke.
    w.person("a.agent", "hr");
    let agent = w.agent("laptop", "a.agent", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    up.wait_ready(READY);
    let sessions = s.run(&["sessions", "list"], None);
    let killed = s.run(
        &["sessions", "kill", sessions[0]["id"].as_str().unwrap()],
        None,
    );
    assert_eq!(killed["ended"], true, "{killed}");
    assert_eq!(
        up.wait_exit(Duration::from_secs(30)),
        Some(4),
        "{}",
        up.log()
    );
    let personal = s.run(&["devices", "list", "--kind", "personal"], None);
    s.run(
        &[
            "devices",
            "revoke",
            "--personal",
            personal[0]["device_id"].as_str().unwrap(),
        ],
        None,
    );

    s.run(&["nodes", "list"], None);
    s.run(&["load"], None);
    s.run(&["report", "inventory"], None);
    s.run(&["audit", "list", "--limit", "5"], None);
    s.run(&["audit", "verify"], None);
    s.run(
        &[
            "stress",
            "--agents",
            "1",
            "--ramp",
            "0s",
            "--duration",
            "1s",
            "--streams-per-minute",
            "0",
        ],
        None,
    );
    let script = s.run(&["completions", "bash"], None);
    assert!(
        script["script"].as_str().unwrap().contains("complete"),
        "{script}"
    );
    let man = tmp.join("man");
    let pages = s.run(&["man", man.to_str().unwrap()], None);
    assert!(man.join("lanyard-staff-add.1").exists(), "{pages}");

    let missed: Vec<_> = s.leaves.difference(&s.covered).collect();
    assert!(missed.is_empty(), "not run with --json: {missed:?}");
}

/// Under --json a failure is one JSON object on stderr, with the exit
/// status it has without --json: the broker's refusal with its code and
/// HTTP status, a usage mistake clap finds, a broker that cannot be reached.
#[test]
fn errors_are_one_json_object_on_stderr_under_json() {
    let w = World::new();
    let error = |args: &[&str], code: i32| -> Value {
        let out = w.broker.lanyard(args, None, None);
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
        let v: Value = serde_json::from_str(&out.stderr)
            .unwrap_or_else(|e| panic!("{args:?}: stderr is not JSON ({e}): {}", out.stderr));
        v["error"].clone()
    };
    let e = error(&["--json", "groups", "remove", "no-such-group"], 1);
    assert_eq!(e["code"], "not_found", "{e}");
    assert_eq!(e["status"], 404, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("no-such-group"),
        "{e}"
    );

    let e = error(&["--json", "staff", "add"], 2);
    assert_eq!(e["code"], "usage", "{e}");
    assert_eq!(e["status"], Value::Null, "{e}");
    assert!(e["message"].as_str().unwrap().contains("USERNAME"), "{e}");

    let e = error(
        &[
            "--json",
            "--broker",
            "https://127.0.0.1:1",
            "groups",
            "list",
        ],
        1,
    );
    assert_eq!(e["code"], "unreachable", "{e}");

    // A CSV import refused names each bad line.
    let csv = w.tmp.path().join("bad.csv");
    std::fs::write(
        &csv,
        "username,name,email,department,priority,groups\nNOT VALID,x,,,3,hr\n",
    )
    .unwrap();
    let e = error(&["--json", "staff", "import", csv.to_str().unwrap()], 1);
    assert_eq!(e["status"], 422, "{e}");
    assert_eq!(e["rows"][0]["line"], 2, "{e}");

    // Without --json the same failure is a line of text.
    let out = w
        .broker
        .lanyard(&["groups", "remove", "no-such-group"], None, None);
    assert!(out.stderr.starts_with("lanyard: error: "), "{}", out.stderr);
}
