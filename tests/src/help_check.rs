//! What the `--help` of a command line lacks, for the tests of the three
//! binaries (`lanyard`, `lanyard-agent`, `lanyard-broker`): each walks its
//! whole command tree with this and fails on any problem.
//!
//! The rules: every command has an example section ("Example:" or
//! "Examples:") in its after-help, where clap keeps the lines as written
//! (in the description clap rewraps them into one line), with at least one
//! line running the binary, and no line so long that clap wraps it; and
//! every argument has a description.

/// Fails the calling test, listing every problem in `cmd`'s help.
pub fn assert_complete(cmd: &clap::Command) {
    let problems = help_problems(cmd);
    assert!(
        problems.is_empty(),
        "--help lacks:\n{}",
        problems.join("\n")
    );
}

/// Every problem in `cmd`'s help and its subcommands' help, one line each
/// naming the command, e.g. `lanyard devices assign: argument --to has no
/// description`.
pub fn help_problems(cmd: &clap::Command) -> Vec<String> {
    let mut cmd = cmd.clone();
    cmd.build();
    let bin = cmd.get_name().to_owned();
    let mut problems = Vec::new();
    walk(&cmd, &bin, &bin, &mut problems);
    problems
}

/// The binaries' `max_term_width`: longer lines are wrapped.
const MAX_WIDTH: usize = 100;

fn walk(cmd: &clap::Command, path: &str, bin: &str, problems: &mut Vec<String>) {
    let about = [cmd.get_about(), cmd.get_long_about()]
        .into_iter()
        .flatten()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    if about.contains("Example") {
        problems.push(format!(
            "{path}: an example in the description is rewrapped by clap; put it in after_help"
        ));
    }
    let after = [cmd.get_after_help(), cmd.get_after_long_help()]
        .into_iter()
        .flatten()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let has_heading = after
        .lines()
        .any(|l| l.starts_with("Example:") || l.starts_with("Examples:"));
    let runs_bin = after
        .lines()
        .any(|l| l.starts_with("  ") && l.trim_start().starts_with(&format!("{bin} ")));
    if !has_heading || !runs_bin {
        problems.push(format!(
            "{path}: no example (an \"Example:\" section in after_help with a line `  {bin} ...`)"
        ));
    }
    for line in after.lines().filter(|l| l.chars().count() > MAX_WIDTH) {
        problems.push(format!(
            "{path}: example line longer than {MAX_WIDTH} columns is rewrapped: {line}"
        ));
    }
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        let described = [arg.get_help(), arg.get_long_help()]
            .into_iter()
            .flatten()
            .any(|h| !h.to_string().trim().is_empty());
        if !described {
            let name = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg
                    .get_value_names()
                    .and_then(|v| v.first())
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| id.to_uppercase()),
            };
            problems.push(format!("{path}: argument {name} has no description"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        walk(sub, &format!("{path} {}", sub.get_name()), bin, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    #[test]
    fn names_missing_examples_and_descriptions() {
        let cmd = Command::new("tool")
            .after_help("Example:\n  tool go --fast")
            .subcommand(
                Command::new("go")
                    .about("Go.\n\nExample: tool go --fast")
                    .arg(Arg::new("fast").long("fast"))
                    .arg(Arg::new("where").help("Where to.")),
            );
        assert_eq!(
            help_problems(&cmd),
            vec![
                "tool go: an example in the description is rewrapped by clap; put it in after_help",
                "tool go: no example (an \"Example:\" section in after_help with a line `  tool ...`)",
                "tool go: argument --fast has no description",
            ]
        );
        let fixed = Command::new("tool")
            .after_help("Example:\n  tool go --fast")
            .subcommand(
                Command::new("go")
                    .about("Go.")
                    .after_help("Examples:\n  tool go --fast\n  tool go home")
                    .arg(Arg::new("fast").long("fast").help("Quickly.")),
            );
        assert_eq!(help_problems(&fixed), Vec::<String>::new());
    }
}
