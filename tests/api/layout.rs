//! The layout's rules, read from the source: every SQL string of the crate lives in
//! `src/db/`.

use std::path::{Path, PathBuf};

/// Calls that run SQL; outside `src/db/` none may appear.
const SQL_CALLS: [&str; 4] = ["sqlx::query", "query_scalar", "query_as", "raw_sql"];

/// Words a SQL statement starts with. A string literal that opens with one of them
/// followed by a space or a line break is a statement (a bare `"DELETE"` is an HTTP
/// method).
const SQL_WORDS: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Where `line` holds SQL: a SQL call, or a string literal opening with a statement.
fn sql_in(line: &str) -> Option<&'static str> {
    if let Some(call) = SQL_CALLS.iter().find(|c| line.contains(*c)) {
        return Some(call);
    }
    line.match_indices('"').find_map(|(i, _)| {
        let rest = line[i + 1..].trim_start();
        SQL_WORDS.iter().copied().find(|word| {
            rest.strip_prefix(word)
                .is_some_and(|after| after.is_empty() || after.starts_with([' ', '\\', '\n']))
        })
    })
}

#[test]
fn sql_lives_only_in_db() {
    // Arrange
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let db = src.join("db");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    // Act
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&db)) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(what) = sql_in(line) {
                let shown = file.strip_prefix(&src).unwrap().display();
                found.push(format!("src/{shown}:{}: {what}: {}", n + 1, line.trim()));
            }
        }
    }
    // Assert
    assert!(
        found.is_empty(),
        "SQL outside src/db/ ({} lines); move it into the db module of its table:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_sql_check_sees_calls_and_statements_but_not_http_methods() {
    assert_eq!(sql_in(r#"sqlx::query("x")"#), Some("sqlx::query"));
    assert_eq!(sql_in("let n = query_scalar(sql)"), Some("query_scalar"));
    assert_eq!(
        sql_in(r#"let s = "SELECT id FROM objects";"#),
        Some("SELECT")
    );
    assert_eq!(sql_in(r#"format!(" DELETE FROM t")"#), Some("DELETE"));
    assert_eq!(sql_in(r#""UPDATE objects \"#), Some("UPDATE"));
    assert_eq!(sql_in(r#"["GET", "HEAD", "PUT", "DELETE"]"#), None);
    assert_eq!(sql_in(r#"summary = "Delete a recorded object","#), None);
    assert_eq!(sql_in(r#"failed("create a staging file")"#), None);
}
