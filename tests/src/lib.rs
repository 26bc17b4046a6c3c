//! Shared helpers of jobfleet's end-to-end tests.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python interpreter of the project's virtualenv (`$JOBFLEET_PYTHON`, else `.venv`).
///
/// # Panics
///
/// When neither exists, naming the set-up script.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("JOBFLEET_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "{} not found: run scripts/setup.sh first",
        venv.display()
    );
    venv
}

/// The body of the first fenced code block in `markdown` with language `lang` whose text
/// contains `marker`.
pub fn code_block(markdown: &str, lang: &str, marker: &str) -> Option<String> {
    let fence = format!("```{lang}");
    let mut rest = markdown;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let body = &body[body.find('\n')? + 1..];
        let end = body.find("\n```")?;
        let block = &body[..end];
        if block.contains(marker) {
            return Some(format!("{block}\n"));
        }
        rest = &body[end..];
    }
    None
}
