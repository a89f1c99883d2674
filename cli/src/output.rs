//! Printing results: aligned tables for people, one JSON document for scripts.
//!
//! Text for people goes through [`terminal_safe`]: much of what is shown came
//! from outside (usernames tried at sign-in, an agent's OS string, notes), and
//! none of it may move the cursor or recolour the terminal. JSON is exact.

use std::borrow::Cow;
use std::io::Write;

use serde::Serialize;

/// Where command output goes; `json` is the global `--json` flag.
pub struct Out<'a> {
    pub json: bool,
    pub w: &'a mut dyn Write,
}

impl std::fmt::Debug for Out<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out").field("json", &self.json).finish()
    }
}

impl Out<'_> {
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *self.w, value)?;
        writeln!(self.w)
    }

    /// What a command did: `value` (a JSON object) under --json, else one
    /// line of `text`.
    pub fn done(&mut self, value: serde_json::Value, text: impl AsRef<str>) -> std::io::Result<()> {
        if self.json {
            self.json(&value)
        } else {
            self.line(text)
        }
    }

    /// One line of text; a newline inside it is shown as `\n`.
    pub fn line(&mut self, text: impl AsRef<str>) -> std::io::Result<()> {
        writeln!(self.w, "{}", terminal_safe(text.as_ref()))
    }

    /// Several lines of text, each made safe as [`Out::line`] does.
    pub fn lines(&mut self, text: impl AsRef<str>) -> std::io::Result<()> {
        for line in text.as_ref().split('\n') {
            self.line(line)?;
        }
        Ok(())
    }

    /// A table with a header row; columns padded to their widest cell.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
        let header: Vec<Cow<'_, str>> = header.iter().map(|h| terminal_safe(h)).collect();
        let rows: Vec<Vec<Cow<'_, str>>> = rows
            .iter()
            .map(|row| row.iter().map(|cell| terminal_safe(cell)).collect())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let fmt_row = |cells: Vec<&str>| -> String {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            line.trim_end().to_owned()
        };
        writeln!(self.w, "{}", fmt_row(header.iter().map(|h| &**h).collect()))?;
        for row in &rows {
            writeln!(self.w, "{}", fmt_row(row.iter().map(|c| &**c).collect()))?;
        }
        if rows.is_empty() {
            writeln!(self.w, "(none)")?;
        }
        Ok(())
    }
}

/// `text` with every character that could steer a terminal written as an
/// escape: C0 controls (`\t`, `\n`, `\r`, and `\u{1b}` for ESC, so an ANSI
/// sequence shows as inert text), DEL, C1 controls (including the one-byte
/// CSI, U+009B), Unicode line and paragraph separators and the bidi
/// embedding, override and isolate controls (which reorder what is shown).
/// Text without any is returned as it is.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_for_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if unsafe_for_terminal(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn unsafe_for_terminal(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

pub fn join(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut buf = Vec::new();
        let mut out = Out {
            json: false,
            w: &mut buf,
        };
        out.table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]])
            .unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "A    BB\nxxx  y\n");
    }

    fn text(f: impl FnOnce(&mut Out<'_>) -> std::io::Result<()>) -> String {
        let mut buf = Vec::new();
        let mut out = Out {
            json: false,
            w: &mut buf,
        };
        f(&mut out).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn control_characters_are_escaped_in_tables_and_lines() {
        let evil = "a\u{1b}[2J\rb\u{7}\u{7f}\u{9b}31m\u{202e}z\n\tc";
        let shown = r"a\u{1b}[2J\rb\u{7}\u{7f}\u{9b}31m\u{202e}z\n\tc";
        // Table cells, and the widths are those of what is shown.
        assert_eq!(
            text(|o| o.table(&["X", "Y"], &[vec![evil.into(), "y".into()]])),
            format!("X{}Y\n{shown}  y\n", " ".repeat(shown.len() + 1))
        );
        assert_eq!(
            text(|o| o.line(format!("notes {evil}"))),
            format!("notes {shown}\n")
        );
        // Several lines: the newlines between them stay, nothing else does.
        assert_eq!(
            text(|o| o.lines(format!("one\n{evil}"))),
            format!("one\n{}\n", shown.replace(r"\n", "\n"))
        );
        // Whatever the text, a row is one line and no control character is left.
        for (out, lines) in [
            (text(|o| o.table(&["X"], &[vec![evil.into()]])), 2),
            (text(|o| o.line(evil)), 1),
        ] {
            assert_eq!(out.matches('\n').count(), lines, "{out:?}");
            assert!(
                !out.replace('\n', "").chars().any(char::is_control),
                "{out:?}"
            );
        }
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for s in [
            "j.smith",
            "Zoë Ærø 山田 \\path",
            "LT-00421",
            "",
            "Windows 11 (23H2)",
        ] {
            assert!(matches!(terminal_safe(s), Cow::Borrowed(t) if t == s));
        }
    }

    #[test]
    fn json_stays_exact() {
        let out = text(|o| o.json(&serde_json::json!({"os": "x\u{1b}[2J\r"})));
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["os"], "x\u{1b}[2J\r");
    }
}
