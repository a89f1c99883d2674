//! Printing results: aligned tables for people, one JSON document for scripts.

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

    pub fn line(&mut self, text: impl AsRef<str>) -> std::io::Result<()> {
        writeln!(self.w, "{}", text.as_ref())
    }

    /// A table with a header row; columns padded to their widest cell.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
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
        writeln!(self.w, "{}", fmt_row(header.to_vec()))?;
        for row in rows {
            writeln!(
                self.w,
                "{}",
                fmt_row(row.iter().map(String::as_str).collect())
            )?;
        }
        if rows.is_empty() {
            writeln!(self.w, "(none)")?;
        }
        Ok(())
    }
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
}
