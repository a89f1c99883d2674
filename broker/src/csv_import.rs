//! Reading an uploaded CSV file whole before anything is written: the
//! header must have exactly the expected columns (in any order), and every
//! row is parsed so that all bad rows can be named at once, by line; each
//! row's fields are all checked, so that every bad field is named.

use std::collections::HashMap;

use crate::store::staff::RowProblem;

/// A parsed data row: its line in the file and its fields by column name.
#[derive(Debug)]
pub struct Row {
    pub line: u64,
    fields: HashMap<String, String>,
}

impl Row {
    pub fn get(&self, column: &str) -> &str {
        self.fields.get(column).map(String::as_str).unwrap_or("")
    }
}

/// Reads `text` with the given columns. A bad header refuses the file as a
/// whole (`Err`, one problem at line 1); otherwise the readable rows and a
/// problem for each unreadable one, so that callers can add their own
/// checks and report every bad row at once.
pub fn read(
    text: &str,
    columns: &[&str],
    optional: &[&str],
) -> Result<(Vec<Row>, Vec<RowProblem>), Vec<RowProblem>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.to_ascii_lowercase()).collect(),
        Err(e) => {
            return Err(vec![RowProblem {
                line: 1,
                problem: format!("cannot read the header: {e}"),
            }])
        }
    };
    let mut want = columns.join(",");
    if !optional.is_empty() {
        want.push_str(&format!(" (optional: {})", optional.join(",")));
    }
    let mut header_problems = Vec::new();
    for c in columns {
        if !header.iter().any(|h| h == c) {
            header_problems.push(format!("missing column {c}"));
        }
    }
    for h in &header {
        if !columns.contains(&h.as_str()) && !optional.contains(&h.as_str()) {
            header_problems.push(format!("unknown column {h:?}"));
        }
    }
    if !header_problems.is_empty() {
        return Err(vec![RowProblem {
            line: 1,
            problem: format!("{} (the header must be {want})", header_problems.join(", ")),
        }]);
    }
    // The file's own line numbers (what an editor shows), from byte offsets:
    // the reader's line counter skips blank lines.
    let line_of = |pos: Option<&csv::Position>| -> u64 {
        pos.map(|p| {
            let bytes = text.as_bytes();
            let mut end = (p.byte() as usize).min(bytes.len());
            // A record's position can sit before the blank lines it skipped.
            while end < bytes.len() && matches!(bytes[end], b'\n' | b'\r') {
                end += 1;
            }
            bytes[..end].iter().filter(|&&b| b == b'\n').count() as u64 + 1
        })
        .unwrap_or(0)
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        match record {
            Err(e) => {
                let line = line_of(e.position());
                problems.push(RowProblem {
                    line,
                    problem: format!("unreadable row: {e}"),
                });
            }
            Ok(r) => {
                let line = line_of(r.position());
                if r.iter().all(str::is_empty) {
                    continue;
                }
                if r.len() != header.len() {
                    problems.push(RowProblem {
                        line,
                        problem: format!("has {} fields, the header has {}", r.len(), header.len()),
                    });
                    continue;
                }
                let fields = header
                    .iter()
                    .cloned()
                    .zip(r.iter().map(str::to_owned))
                    .collect();
                rows.push(Row { line, fields });
            }
        }
    }
    Ok((rows, problems))
}

/// A row's field problems, collected so that every bad field is named,
/// not only the first.
#[derive(Debug, Default)]
pub struct FieldProblems(pub Vec<String>);

impl FieldProblems {
    /// The value, or `None` with its problem noted.
    pub fn check<T>(&mut self, parsed: Result<T, crate::model::Invalid>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e.0);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_by_column_in_any_order() {
        let (rows, problems) = read("b,a\n2,1\n\n4,3\n", &["a", "b"], &[]).unwrap();
        assert!(problems.is_empty());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get("a"), "1");
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn field_problems_keep_every_one() {
        let mut p = FieldProblems::default();
        assert_eq!(p.check(crate::model::Priority::parse("7")), None);
        assert!(p.check(crate::model::Username::parse("j.smith")).is_some());
        assert_eq!(p.check(crate::model::Username::parse("J S")), None);
        assert_eq!(p.0.len(), 2, "{:?}", p.0);
    }

    #[test]
    fn optional_columns_may_be_left_out() {
        let (rows, _) = read("a,b\n1,2\n", &["a"], &["b", "c"]).unwrap();
        assert_eq!(rows[0].get("b"), "2");
        assert_eq!(rows[0].get("c"), "");
    }

    #[test]
    fn header_problems_refuse_the_file() {
        let err = read("a,c\n1,2\n", &["a", "b"], &[]).unwrap_err();
        assert_eq!(err[0].line, 1);
        assert!(err[0].problem.contains("missing column b"));
        assert!(err[0].problem.contains("unknown column \"c\""));
    }

    #[test]
    fn short_rows_are_named_by_line() {
        let (rows, problems) = read("a,b\n1,2\n3\n5,6,7\n", &["a", "b"], &[]).unwrap();
        assert_eq!(rows.len(), 1);
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4]);
    }
}
