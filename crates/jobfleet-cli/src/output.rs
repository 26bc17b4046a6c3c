//! Printing results: text for people, one JSON document with `--json`.

use serde::Serialize;

use crate::error::CliError;

/// Where results go, and in which form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON, or `human()` as text.
    pub(crate) fn print<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(text) => println!("{text}"),
                Err(err) => eprintln!("jobfleet: cannot print JSON: {err}"),
            }
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }

    /// Reports a failure on stderr (as JSON with `--json`).
    pub(crate) fn error(&self, err: &CliError) {
        if self.json {
            let body = serde_json::json!({
                "error": err.to_string(),
                "kind": format!("{:?}", err.kind()),
                "exit_code": err.kind().exit_code(),
            });
            eprintln!("{body}");
        } else {
            eprintln!("jobfleet: {err}");
        }
    }
}

/// A fixed-width text table.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `1.5s`, `3m12s`, `2h5m`: a short age.
pub(crate) fn short_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m", secs / 3600, (secs % 3600) / 60),
    }
}
