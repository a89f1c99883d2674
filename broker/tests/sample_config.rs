//! The sample config the Debian package installs as
//! /etc/lanyard/broker.toml: it parses, it names every key the broker
//! accepts (the complete fixture's), and each commented-out key shows
//! the true default.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeSet;

use lanyard_broker::config::{FileConfig, Overrides, Settings};

const SAMPLE: &str = include_str!("../../packaging/broker.toml");
const EVERY_KEY: &str = include_str!("fixtures/valid.toml");

/// Keys whose commented-out value is an example, not the default (their
/// default is "none" or derived, as their comment says).
const EXAMPLES: &[&str] = &[
    "database_url",
    "public_addr",
    "server_names",
    "tls_cert",
    "tls_key",
    "node",
    "audit.checkpoint_file",
    "metrics_listen",
    "log_level",
    "oidc.issuer",
    "oidc.client_id",
    "oidc.client_secret_file",
    "oidc.groups_claim",
    "oidc.username_claim",
    "oidc.provision",
    "oidc.redirect_ports",
    "oidc.recheck_every",
    "oidc.scopes",
    "oidc.console_redirect_url",
];

fn settings(text: &str) -> Settings {
    let file = FileConfig::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Settings::resolve(Overrides::default(), file).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `table.key` for each `key = value` line, commented out or not, with the
/// line's index, and that of its table's header when the whole table is
/// commented out (a section that is off unless set).
fn keys(text: &str) -> Vec<(String, usize, Option<usize>)> {
    let mut table = String::new();
    let mut header = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let body = line.strip_prefix('#').unwrap_or(line).trim();
        if let Some(name) = body.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                table = format!("{name}.");
                header = line.starts_with('#').then_some(i);
                continue;
            }
        }
        if let Some((key, _)) = body.split_once(" = ") {
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                out.push((format!("{table}{key}"), i, header));
            }
        }
    }
    out
}

fn uncomment(text: &str, lines: &[usize]) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if lines.contains(&i) {
                l.trim_start_matches('#').trim_start()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_sample_names_every_key_the_broker_accepts() {
    let sample: BTreeSet<String> = keys(SAMPLE).into_iter().map(|(k, ..)| k).collect();
    let every: BTreeSet<String> = keys(EVERY_KEY).into_iter().map(|(k, ..)| k).collect();
    let missing: Vec<_> = every.difference(&sample).collect();
    assert!(missing.is_empty(), "the sample config lacks {missing:?}");
    let unknown: Vec<_> = sample.difference(&every).collect();
    assert!(
        unknown.is_empty(),
        "the sample names unknown keys {unknown:?}"
    );
}

#[test]
fn the_sample_parses_and_each_commented_key_shows_its_default() {
    let as_installed = format!("{:?}", settings(SAMPLE));
    let all = keys(SAMPLE);
    for (key, line, header) in all.iter().cloned() {
        if !SAMPLE
            .lines()
            .nth(line)
            .unwrap()
            .trim_start()
            .starts_with('#')
        {
            continue;
        }
        // A key of a commented-out table is read with its whole table.
        let text = match header {
            Some(h) => {
                let mut lines = vec![h];
                lines.extend(all.iter().filter(|k| k.2 == Some(h)).map(|k| k.1));
                uncomment(SAMPLE, &lines)
            }
            None => uncomment(SAMPLE, &[line]),
        };
        if EXAMPLES.contains(&key.as_str()) {
            // An example must still be a key and value the broker reads.
            FileConfig::parse(&text).unwrap_or_else(|e| panic!("{key}: {e}"));
            continue;
        }
        let with = settings(&text);
        assert_eq!(
            format!("{with:?}"),
            as_installed,
            "{key}: the commented-out value is not the default"
        );
    }
}
