//! What berth prints: aligned tables for people and pretty JSON for scripts (`--format`). It
//! formats values it is given; it does not fetch them or decide which columns a command shows.

use serde_json::Value;

/// How results are printed, chosen with `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and plain lines.
    Human,
    /// The API's JSON, pretty-printed.
    Json,
}

/// Columns separated by three spaces, each as wide as its widest cell, like docker's tables.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; it must have one cell per header.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        let mut text = String::new();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                if index > 0 {
                    line.push_str("   ");
                }
                line.push_str(cell);
                let padding = width - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', padding));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// The first 12 characters of an id, as tables show it.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

pub fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("a JSON value always serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut table = Table::new(&["NETWORK ID", "NAME", "DRIVER"]);
        table.row(vec!["0123456789ab".into(), "bridge".into(), "bridge".into()]);
        table.row(vec!["ba9876543210".into(), "a-longer-name".into(), "".into()]);
        assert_eq!(
            table.render(),
            "NETWORK ID     NAME            DRIVER\n\
             0123456789ab   bridge          bridge\n\
             ba9876543210   a-longer-name\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["A", "B"]).render(), "A   B\n");
    }

    #[test]
    fn short_ids_have_twelve_characters() {
        assert_eq!(short_id(&"f".repeat(64)), "ffffffffffff");
        assert_eq!(short_id("abc"), "abc");
    }
}
