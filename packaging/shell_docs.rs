//! Shell completions and man pages from a binary's clap command tree, for
//! the three binaries (`lanyard`, `lanyard-agent`, `lanyard-broker`): each
//! includes this file with `#[path]` (one source, no crate of its own).
//! `completions SHELL` prints a script; the hidden `man DIR` writes the man
//! pages that `packaging/build-debs.sh` puts in the packages.

use std::path::{Path, PathBuf};

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `cmd`'s completion script for `shell` (made in memory: clap_complete
/// panics on a failed write, and a closed stdout must not panic).
pub fn completions(shell: Shell, mut cmd: clap::Command) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

/// Writes a man page (section 1) for `cmd` and one for each of its visible
/// subcommands (`lanyard-staff-add.1`) into `dir`; the files written.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)?;
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") {
            pages.push(path);
        }
    }
    pages.sort();
    Ok(pages)
}
