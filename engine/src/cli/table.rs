//! Plain-text tables: a header row in capitals and columns as wide as their widest cell.

/// Rows of text cells under a header.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Longest cell printed; longer text is cut with an ellipsis so a table stays a table.
const MAX_CELL: usize = 60;

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let cut = |text: &str| -> String {
            let one_line = text.replace(['\n', '\r', '\t'], " ");
            if one_line.chars().count() > MAX_CELL {
                let mut short: String = one_line.chars().take(MAX_CELL - 1).collect();
                short.push('…');
                short
            } else {
                one_line
            }
        };
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| cut(c)).collect())
            .collect();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (i, c) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(c);
                } else {
                    let pad = widths.get(i).copied().unwrap_or(0);
                    out.push_str(c);
                    out.push_str(&" ".repeat(pad.saturating_sub(c.chars().count()) + 2));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        for row in &rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    pub(crate) fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["id", "name"]);
        t.row(vec!["a".into(), "first".into()]);
        t.row(vec!["long-id".into(), "second\nline".into()]);
        assert_eq!(
            t.render(),
            "ID       NAME\na        first\nlong-id  second line\n"
        );
    }
}
