//! Accessibility checks in a real browser: axe-core (installed from npm by
//! tests/browser/install.sh, outside the clone) injected into the page a
//! [`Browser`] shows, run against the WCAG 2.2 A and AA rules.
//!
//! WebDriver's scripts run outside the page's Content-Security-Policy, so
//! a page with `script-src 'self'` is checked as it is served.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::webdriver::{Browser, Error, Result};

/// The axe-core rule tags run by [`Axe::check`]: WCAG 2.0, 2.1 and 2.2,
/// levels A and AA.
pub const WCAG_TAGS: &[&str] = &["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/// The longest axe.min.js read (it is about 0.6 MB).
const MAX_SCRIPT: u64 = 8 * 1024 * 1024;

/// Where axe.min.js is: `$LANYARD_AXE_JS`, else in `$LANYARD_AXE_DIR` or
/// `~/.cache/lanyard-axe-core` (where tests/browser/install.sh puts it).
pub fn axe_js_path() -> PathBuf {
    if let Some(path) = std::env::var_os("LANYARD_AXE_JS") {
        return PathBuf::from(path);
    }
    let dir = std::env::var_os("LANYARD_AXE_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
                .join(".cache/lanyard-axe-core")
        },
        PathBuf::from,
    );
    dir.join("node_modules/axe-core/axe.min.js")
}

/// One rule a page breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule, e.g. `image-alt`, `label`, `color-contrast`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    /// What the rule asks for, in a line.
    pub help: String,
    pub help_url: String,
    /// The elements that break it.
    pub nodes: Vec<ViolationNode>,
}

/// An element breaking a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationNode {
    /// CSS selectors naming it (one per frame or shadow root on the way).
    pub target: Vec<String>,
    /// Its HTML (the start of it).
    pub html: String,
    /// What to fix.
    pub failure_summary: String,
}

/// axe-core's script, loaded once and injected into pages.
#[derive(Clone)]
pub struct Axe {
    source: String,
}

impl std::fmt::Debug for Axe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Axe({} bytes)", self.source.len())
    }
}

impl Axe {
    /// Reads axe.min.js from [`axe_js_path`]; why not when it cannot.
    pub fn load() -> std::result::Result<Self, String> {
        use std::io::Read;
        let path = axe_js_path();
        let file = std::fs::File::open(&path).map_err(|e| {
            format!(
                "axe-core is not installed ({}: {e}; bash tests/browser/install.sh installs it, .ci/run calls it)",
                path.display()
            )
        })?;
        let mut source = String::new();
        file.take(MAX_SCRIPT)
            .read_to_string(&mut source)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if !source.contains("axe") {
            return Err(format!("{} is not axe-core", path.display()));
        }
        Ok(Axe { source })
    }

    /// As [`load`](Self::load), or `None` after a `skipped:` line.
    pub fn for_test() -> Option<Self> {
        match Self::load() {
            Ok(axe) => Some(axe),
            Err(why) => {
                lanyard_broker::testkit::say_skipped(&format!("accessibility check: {why}"));
                None
            }
        }
    }

    /// Injects axe-core into the current page when it is not there yet.
    pub fn inject(&self, browser: &Browser) -> Result<()> {
        let present = browser.execute("return typeof window.axe === 'object';", &[])?;
        if present == Value::Bool(true) {
            return Ok(());
        }
        let script = format!("{}\n;return typeof window.axe;", self.source);
        let kind = browser.execute(&script, &[])?;
        if kind != json!("object") {
            return Err(Error::Protocol(format!(
                "axe-core did not load into the page (window.axe is {kind})"
            )));
        }
        Ok(())
    }

    /// The WCAG 2.2 A/AA rules ([`WCAG_TAGS`]) the current page breaks.
    pub fn check(&self, browser: &Browser) -> Result<Vec<Violation>> {
        self.check_tags(browser, WCAG_TAGS)
    }

    /// The rules tagged with any of `tags` that the current page breaks.
    pub fn check_tags(&self, browser: &Browser, tags: &[&str]) -> Result<Vec<Violation>> {
        self.inject(browser)?;
        let answer = browser.execute_async(RUN, &[json!(tags)])?;
        if let Some(error) = answer.get("error") {
            return Err(Error::Protocol(format!("axe.run failed: {error}")));
        }
        let list = answer
            .get("violations")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Protocol(format!("axe.run answered {answer}")))?;
        Ok(list.iter().map(violation).collect())
    }

    /// Panics, listing the violations, when the current page breaks any
    /// WCAG 2.2 A/AA rule; `what` names the page in the message.
    pub fn assert_accessible(&self, browser: &Browser, what: &str) {
        let violations = match self.check(browser) {
            Ok(v) => v,
            Err(e) => panic!("accessibility check of {what} did not run: {e}"),
        };
        assert!(
            violations.is_empty(),
            "{}",
            format_violations(what, &violations)
        );
    }
}

/// Runs axe on the document with the tags in `arguments[0]`; answers
/// `{violations}` or `{error}`.
const RUN: &str = r#"
const done = arguments[arguments.length - 1];
const tags = arguments[0];
const flat = (t) => Array.isArray(t) ? t.join(' >>> ') : String(t);
window.axe.run(document, {
  runOnly: { type: 'tag', values: tags },
  resultTypes: ['violations'],
}).then((r) => done({
  violations: r.violations.map((v) => ({
    id: v.id,
    impact: v.impact || null,
    help: v.help,
    helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({
      target: n.target.map(flat),
      html: n.html,
      failureSummary: n.failureSummary || '',
    })),
  })),
}), (e) => done({ error: String(e && e.stack || e) }));
"#;

fn violation(value: &Value) -> Violation {
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let nodes = value
        .get("nodes")
        .and_then(Value::as_array)
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| ViolationNode {
                    target: n
                        .get("target")
                        .and_then(Value::as_array)
                        .map(|t| {
                            t.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                    html: text(n, "html"),
                    failure_summary: text(n, "failureSummary"),
                })
                .collect()
        })
        .unwrap_or_default();
    Violation {
        id: text(value, "id"),
        impact: value
            .get("impact")
            .and_then(Value::as_str)
            .map(str::to_owned),
        help: text(value, "help"),
        help_url: text(value, "helpUrl"),
        nodes,
    }
}

/// A failure message listing `violations` of the page `what`: each rule,
/// its impact, what it asks and the elements breaking it.
pub fn format_violations(what: &str, violations: &[Violation]) -> String {
    let mut out = format!(
        "{what}: {} accessibility violation(s) (WCAG 2.2 A/AA, axe-core):",
        violations.len()
    );
    for v in violations {
        let _ = write!(
            out,
            "\n- {} [{}]: {} ({})",
            v.id,
            v.impact.as_deref().unwrap_or("unknown impact"),
            v.help,
            v.help_url
        );
        for node in &v.nodes {
            let html: String = node.html.chars().take(160).collect();
            let _ = write!(out, "\n    at {}: {html}", node.target.join(" "));
            for line in node.failure_summary.lines() {
                let _ = write!(out, "\n      {line}");
            }
        }
    }
    out
}
