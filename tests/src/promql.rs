//! The metric names a PromQL expression reads, and the expressions in the
//! shipped Grafana dashboard (JSON) and Prometheus rules (YAML), so a test
//! can check each name against a real broker's `/metrics`.
//!
//! The scanner is small and knows its limits: it drops string literals,
//! `{...}` label matchers and `[...]` ranges, skips the label lists after
//! `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`, and
//! takes every other identifier not followed by `(` or `by (`/`without (`
//! (a function or an aggregation) and not a keyword to be a metric name.

use std::collections::BTreeSet;

/// Keywords and constants that are not metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` reads.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    // Past the bracket that closes the one at `i`.
    let skip_group = |i: usize, open: char, close: char| {
        let mut depth = 0;
        let mut j = i;
        while j < chars.len() {
            if chars[j] == open {
                depth += 1;
            } else if chars[j] == close {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                // A string literal, with backslash escapes (not in backticks).
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    if chars[j] == '\\' && c != '`' {
                        j += 1;
                    }
                    j += 1;
                }
                i = j + 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' => i = skip_group(i, '{', '}'),
            '[' => i = skip_group(i, '[', ']'),
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // A number (1, 0.99, 1e3, 0x1f) or a duration (5m).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let after = next_non_space(i);
                let followed_by_paren = chars.get(after) == Some(&'(');
                // `sum by (...) (...)`: an aggregation, its grouping first.
                let next_word: String = chars[after..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                let aggregation = matches!(next_word.as_str(), "by" | "without")
                    && chars
                        .get(next_non_space(after + next_word.len()))
                        .is_some_and(|c| *c == '(');
                if LABEL_LISTS.contains(&word.as_str()) {
                    if followed_by_paren {
                        i = skip_group(after, '(', ')');
                    }
                } else if word == "offset" {
                    // `offset 5m`: the duration is a number token, skipped next.
                } else if followed_by_paren || aggregation || KEYWORDS.contains(&word.as_str()) {
                    // A function, an aggregation or a keyword.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every PromQL expression in a Grafana dashboard: each panel target's
/// `expr` (rows' nested panels too) and each template variable's
/// `label_values(SELECTOR, label)` selector.
pub fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        ("definition", serde_json::Value::String(d)) => {
                            if let Some(rest) = d.trim().strip_prefix("label_values(") {
                                // The selector, before the label argument.
                                let mut depth = 0;
                                let end = rest
                                    .char_indices()
                                    .find(|(_, c)| {
                                        match c {
                                            '{' | '(' => depth += 1,
                                            '}' | ')' if depth > 0 => depth -= 1,
                                            ',' | ')' if depth == 0 => return true,
                                            _ => {}
                                        }
                                        false
                                    })
                                    .map_or(rest.len(), |(i, _)| i);
                                out.push(rest[..end].to_owned());
                            }
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// Every `expr:` in a Prometheus rules file: a plain or quoted scalar on
/// the same line, or a `|` / `>` block of the lines indented under it.
pub fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        i += 1;
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len() {
                let l = lines[i];
                let l_indent = l.len() - l.trim_start().len();
                if !l.trim().is_empty() && l_indent <= indent {
                    break;
                }
                block.push(l.trim());
                i += 1;
            }
            out.push(block.join("\n"));
        } else if let Some(q) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            out.push(q.replace("\\\"", "\"").replace("\\\\", "\\"));
        } else if let Some(q) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            out.push(q.replace("''", "'"));
        } else {
            out.push(value.to_owned());
        }
    }
    out
}

/// The metric names of the samples in a Prometheus text exposition.
pub fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn functions_keywords_labels_ranges_and_numbers_are_not_names() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, instance) (rate(x_seconds_bucket{job=~"$job", a="b{c}"}[$__rate_interval])))"#
            ),
            ["x_seconds_bucket"]
        );
        assert_eq!(
            names("increase(a_total[10m]) > 30\nand\nrate(a_total[10m]) > 0.1 * (rate(b_total[10m]) + rate(a_total[10m]))"),
            ["a_total", "b_total"]
        );
        assert_eq!(names("cert_seconds < 14 * 86400"), ["cert_seconds"]);
        assert_eq!(
            names("time() - max by (instance, version) (start * on (instance) group_left (version) info)"),
            ["info", "start"]
        );
        assert_eq!(names("open / max_fds > 0.8"), ["max_fds", "open"]);
        assert_eq!(
            names("sum without (app) (x) offset 1h unless y == bool 1"),
            ["x", "y"]
        );
        assert_eq!(
            names("up{job=\"lanyard\"} == 0 # a comment naming z"),
            ["up"]
        );
        assert_eq!(names("ns:rule:rate5m"), ["ns:rule:rate5m"]);
        assert!(names("vector(1) + 1e3 + inf").is_empty());
    }

    #[test]
    fn rule_files_give_plain_quoted_and_block_exprs() {
        let yaml = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: a == 0\n        for: 1m\n      - alert: B\n        expr: |\n          increase(b[5m]) > 1\n          and c > 2\n        labels:\n          x: y\n      - record: r\n        expr: \"d{x=\\\"1\\\"}\"\n      - expr: 'e'\n";
        assert_eq!(
            rule_exprs(yaml),
            [
                "a == 0",
                "increase(b[5m]) > 1\nand c > 2",
                "d{x=\"1\"}",
                "e"
            ]
        );
    }

    #[test]
    fn dashboards_give_every_target_and_variable_selector() {
        let dash = serde_json::json!({
            "panels": [
                {"type": "row", "panels": [{"targets": [{"expr": "a"}]}]},
                {"targets": [{"expr": "rate(b[1m])"}, {"expr": "c"}]}
            ],
            "templating": {"list": [
                {"definition": "label_values(d{job=~\"$job\"}, instance)"},
                {"definition": "label_values(e, job)"}
            ]}
        });
        assert_eq!(
            dashboard_exprs(&dash),
            ["a", "rate(b[1m])", "c", "d{job=~\"$job\"}", "e"]
        );
    }

    #[test]
    fn exposed_names_come_from_samples() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total 1\nb{le=\"1\"} 2\nc 3\n";
        assert_eq!(
            exposed_names(text).into_iter().collect::<Vec<_>>(),
            ["a_total", "b", "c"]
        );
    }
}
