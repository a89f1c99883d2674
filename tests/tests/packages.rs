//! The Debian packages: `packaging/build-debs.sh --prebuilt` packages the
//! binaries this test run built (no release build), the packages are
//! unpacked in a scratch root (`dpkg-deb -x`), and their files, systemd
//! units (`systemd-analyze verify`) and binaries are checked there: the
//! installed broker starts from the installed sample config and answers
//! the installed CLI.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lanyard_e2e::{bin_dir, run, BrokerProcess};

/// The workspace root (this crate is `tests/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn found(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `KEY=VALUE` lines of a unit's sections (a repeated key keeps each value).
fn unit_keys(path: &Path) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            keys.entry(k.trim().to_owned())
                .or_default()
                .push(v.trim().to_owned());
        }
    }
    keys
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `systemd-analyze verify` on `unit` inside `root` (a copy of the
/// host's units beside the package's, so that targets resolve and
/// `ExecStart=` is checked against the packaged binary); every line it
/// prints is a problem (it warns about unknown keys and still exits 0).
fn verify_unit(root: &Path, unit: &str) -> Result<(), String> {
    let out = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .args(["--man=no", "verify", unit])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("systemd-analyze verify {unit}: {said}"))
    }
}

#[test]
fn the_debs_install_the_binaries_units_and_config_and_they_run() {
    for (tool, arg) in [("cargo-deb", "--version"), ("dpkg-deb", "--version")] {
        if !found(tool, arg) {
            println!(
                "SKIPPED: {tool} is not installed (.ci/run installs it); the .debs were not built"
            );
            return;
        }
    }
    let bins = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("debs");
    let made = run(
        {
            let mut cmd = Command::new(workspace().join("packaging/build-debs.sh"));
            cmd.arg("--prebuilt").arg(bins).arg("--out").arg(&out);
            cmd
        },
        None,
    );
    assert_eq!(made.code, 0, "build-debs.sh failed:\n{}", made.stderr);

    let root = tmp.path().join("root");
    let mut packages = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let deb = entry.unwrap().path();
        let name = run(
            {
                let mut cmd = Command::new("dpkg-deb");
                cmd.args(["--field"]).arg(&deb).arg("Package");
                cmd
            },
            None,
        )
        .ok();
        packages.push(name.stdout.trim().to_owned());
        let mut x = Command::new("dpkg-deb");
        x.arg("-x").arg(&deb).arg(&root);
        run(x, None).ok();
        if name.stdout.trim() == "lanyard-broker" {
            let mut e = Command::new("dpkg-deb");
            e.arg("-e").arg(&deb).arg(tmp.path().join("broker-control"));
            run(e, None).ok();
        }
    }
    packages.sort();
    assert_eq!(packages, ["lanyard", "lanyard-agent", "lanyard-broker"]);

    // The files, where an admin and systemd look for them.
    for (file, want) in [
        ("usr/bin/lanyard-broker", 0o755),
        ("usr/bin/lanyard-agent", 0o755),
        ("usr/bin/lanyard", 0o755),
        ("usr/lib/systemd/system/lanyard-broker.service", 0o644),
        ("usr/lib/systemd/user/lanyard-agent.service", 0o644),
        ("etc/lanyard/broker.toml", 0o640),
    ] {
        assert_eq!(mode(&root.join(file)), want, "{file}");
    }
    let control = tmp.path().join("broker-control");
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles"))
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["/etc/lanyard/broker.toml"],
        "the sample config must be a conffile (an upgrade keeps the admin's edits)"
    );
    let postinst = control.join("postinst");
    let syntax = run(
        {
            let mut cmd = Command::new("sh");
            cmd.arg("-n").arg(&postinst);
            cmd
        },
        None,
    );
    assert_eq!(syntax.code, 0, "postinst: {}", syntax.stderr);
    let postinst = std::fs::read_to_string(&postinst).unwrap();
    assert!(
        postinst.contains("useradd --system") && postinst.contains(" lanyard"),
        "postinst does not make the lanyard user:\n{postinst}"
    );

    // The broker's unit: notify, its own user and state dir, hardened, and
    // file descriptors for limits.agents.
    let broker = unit_keys(&root.join("usr/lib/systemd/system/lanyard-broker.service"));
    for (key, want) in [
        ("Type", "notify"),
        ("ExecStart", "/usr/bin/lanyard-broker serve"),
        ("User", "lanyard"),
        ("StateDirectory", "lanyard"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(
            broker.get(key).map(|v| v[0].as_str()),
            Some(want),
            "lanyard-broker.service: {key}"
        );
    }
    let nofile: usize = broker["LimitNOFILE"][0].parse().unwrap();
    assert!(
        nofile >= 4 * 10_000 + 512,
        "LimitNOFILE={nofile} is too few for 10000 agents with open streams"
    );
    // The agent's user unit: restarted on failure, but not after the exit
    // statuses that mean starting again cannot help.
    let agent = unit_keys(&root.join("usr/lib/systemd/user/lanyard-agent.service"));
    assert_eq!(agent["ExecStart"], ["/usr/bin/lanyard-agent up"]);
    assert_eq!(agent["Restart"], ["on-failure"]);
    assert_eq!(agent["WantedBy"], ["default.target"]);
    let prevent: Vec<&str> = agent["RestartPreventExitStatus"][0]
        .split_whitespace()
        .collect();
    for status in ["3", "4", "5"] {
        assert!(prevent.contains(&status), "{prevent:?} lacks {status}");
    }

    if found("systemd-analyze", "--version") {
        let vroot = tmp.path().join("verify-root");
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&root).arg(&vroot);
        run(cp, None).ok();
        for dir in ["usr/lib/systemd/system", "usr/lib/systemd/user"] {
            let mut cp = Command::new("cp");
            cp.arg("-an").arg(format!("/{dir}/.")).arg(vroot.join(dir));
            run(cp, None).ok();
        }
        // The broker unit's ExecReload runs the system's kill (procps, in
        // every Debian install), which a scratch root lacks.
        let bin = vroot.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let mut cp = Command::new("cp");
        cp.arg("-L").arg("/bin/kill").arg(bin.join("kill"));
        run(cp, None).ok();
        verify_unit(&vroot, "lanyard-broker.service").unwrap();
        // systemd's own measure of the sandbox: 0 (locked down) to 10.
        let security = Command::new("systemd-analyze")
            .arg(format!("--root={}", vroot.display()))
            .args(["security", "--offline=yes", "lanyard-broker.service"])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&security.stdout);
        let exposure: f64 = report
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for lanyard-broker.service: "))
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level:\n{report}"));
        assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
        // `--user` takes no --root: the user unit is checked as a system
        // unit (its keys, its ExecStart in the package).
        std::fs::create_dir_all(vroot.join("etc/systemd/system")).unwrap();
        std::fs::copy(
            vroot.join("usr/lib/systemd/user/lanyard-agent.service"),
            vroot.join("etc/systemd/system/lanyard-agent.service"),
        )
        .unwrap();
        verify_unit(&vroot, "lanyard-agent.service").unwrap();
    } else {
        println!("SKIPPED: systemd-analyze is not installed (.ci/run installs systemd); the units were not verified");
    }

    // Man pages for each command, and completions where each shell looks.
    for (binary, sub) in [
        ("lanyard-broker", "lanyard-broker-serve"),
        ("lanyard-agent", "lanyard-agent-up"),
        ("lanyard", "lanyard-staff-add"),
    ] {
        for page in [binary, sub] {
            let path = root.join(format!("usr/share/man/man1/{page}.1.gz"));
            assert_eq!(mode(&path), 0o644, "{page}");
            let mut gz = Command::new("gzip");
            gz.arg("-dc").arg(&path);
            let text = run(gz, None).ok().stdout;
            assert!(text.contains(&format!(".TH {page} 1")), "{page}: {text}");
        }
        let bash = root.join(format!("usr/share/bash-completion/completions/{binary}"));
        let mut load = Command::new("bash");
        load.arg("-c")
            .arg(format!("source {} && complete -p {binary}", bash.display()));
        let load = run(load, None);
        assert_eq!(load.code, 0, "{binary} bash completion: {}", load.stderr);
        assert!(load.stdout.contains(binary), "{}", load.stdout);
        let zsh = std::fs::read_to_string(
            root.join(format!("usr/share/zsh/vendor-completions/_{binary}")),
        )
        .unwrap();
        assert!(zsh.starts_with(&format!("#compdef {binary}")), "{binary}");
        let fish = std::fs::read_to_string(
            root.join(format!("usr/share/fish/vendor_completions.d/{binary}.fish")),
        )
        .unwrap();
        assert!(fish.contains(&format!("complete -c {binary}")), "{binary}");
    }

    // The installed binaries run.
    for binary in ["lanyard-broker", "lanyard-agent", "lanyard"] {
        let mut cmd = Command::new(root.join("usr/bin").join(binary));
        cmd.arg("--version");
        let v = run(cmd, None).ok();
        assert_eq!(
            v.stdout.trim(),
            format!("{binary} {}", env!("CARGO_PKG_VERSION"))
        );
    }
    let config = root.join("etc/lanyard/broker.toml");
    let mut check = Command::new(root.join("usr/bin/lanyard-broker"));
    check.arg("check-config").arg("--config").arg(&config);
    let check = run(check, None).ok();
    assert!(
        check.stdout.contains("data_dir      /var/lib/lanyard"),
        "{}",
        check.stdout
    );
    // The installed broker from the installed config (its data dir and
    // listeners moved to this test's), answering the installed CLI.
    let data = tmp.path().join("data");
    let mut broker = BrokerProcess::start_program(
        &root.join("usr/bin/lanyard-broker"),
        &data,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let mut cli = Command::new(root.join("usr/bin/lanyard"));
    cli.args(["--broker", &broker.api, "--json", "staff", "list"])
        .arg("--ca-cert")
        .arg(data.join("ca.pem"))
        .arg("--token-file")
        .arg(data.join("admin-token"))
        .env_remove("LANYARD_TOKEN");
    let listed = run(cli, None).ok();
    assert_eq!(listed.stdout.trim(), "[]");
    broker.signal("TERM");
    assert_eq!(broker.wait_exit(Duration::from_secs(10)), Some(0));
}
