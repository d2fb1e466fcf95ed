//! The layout's rules, read from the source: every SQL string of the crate lives in
//! `src/db/`, no module imports another that imports it back, and none imports one in
//! a group of `lib.rs` above its own (front ends, then features, then infrastructure).

use std::collections::{BTreeMap, BTreeSet};
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

/// The crate's `src/`, and every `.rs` file under it in order, each with its path
/// from `src/` (`db/copies.rs`).
fn source_files() -> (PathBuf, Vec<(PathBuf, String)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let named = files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().display().to_string();
            (f, rel)
        })
        .collect();
    (src, named)
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
    let (src, files) = source_files();
    let db = src.join("db");
    // Act
    let mut found = Vec::new();
    for (file, rel) in files.iter().filter(|(f, _)| !f.starts_with(&db)) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(what) = sql_in(line) {
                found.push(format!("src/{rel}:{}: {what}: {}", n + 1, line.trim()));
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

/// Top-level modules whose submodules are modules of their own in the import graph;
/// every other top-level module is one.
const SPLIT: [&str; 7] = [
    "accounts",
    "api",
    "app",
    "maintenance",
    "observe",
    "storage",
    "uploads",
];

/// The module path of a file under `src`: `a/b.rs` and `a/b/mod.rs` are `a::b`;
/// `lib.rs` and `main.rs` are the crate root (empty).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The node of the import graph a module belongs to: its top-level module, or for
/// the modules in [`SPLIT`] the submodule under it.
fn node_of(module: &[String]) -> String {
    let depth = if SPLIT.contains(&module[0].as_str()) {
        2
    } else {
        1
    };
    module[..module.len().min(depth)].join("::")
}

/// The code of a file that builds into the crate: comment lines and the unit tests
/// at its end left out.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a `use` tree starting at `text` names, its groups spread out: `a::{b,
/// c::d}` is `a::b` and `a::c::d`. Stops at the end of the path or the tree.
fn paths_from(text: &str) -> Vec<Vec<String>> {
    fn tree(chars: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
            if chars.get(*i) == Some(&'{') {
                *i += 1;
                loop {
                    tree(chars, i, &path, out);
                    while *i < chars.len() && chars[*i].is_whitespace() {
                        *i += 1;
                    }
                    match chars.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < chars.len() && chars[*i].is_whitespace() {
                        *i += 1;
                    }
                    if chars.get(*i) == Some(&'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if *i > start {
                path.push(chars[start..*i].iter().collect());
            }
            if chars[*i..].starts_with(&[':', ':']) {
                *i += 2;
            } else {
                break;
            }
        }
        // `x as y` and the rest of an expression are not part of the path.
        while *i < chars.len() && !matches!(chars[*i], ',' | '}' | ';') {
            if chars[*i] == '{' || chars[*i] == '(' || chars[*i] == '\n' {
                break;
            }
            *i += 1;
        }
        out.push(path);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    tree(&chars, &mut 0, &[], &mut out);
    out
}

/// The absolute module paths `code` (the code of `module`) names through `crate::`,
/// `super::` and `self::`, and through `use` of a submodule by its bare name.
fn named_paths(code: &str, module: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(|c: char| c.is_alphabetic()) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '$')) {
            continue;
        }
        let rest = &code[at..];
        let rest = &rest[..rest.find(';').unwrap_or(rest.len())];
        let is_use = ["use ", "pub use ", "pub(crate) use "]
            .iter()
            .any(|u| code[..at].ends_with(u));
        if !(rest.starts_with("crate::")
            || rest.starts_with("super::")
            || rest.starts_with("self::")
            || is_use)
        {
            continue;
        }
        for path in paths_from(rest) {
            let mut base = module.to_vec();
            let mut segments = path.as_slice();
            match segments.first().map(String::as_str) {
                Some("crate") => {
                    base.clear();
                    segments = &segments[1..];
                }
                Some("super" | "self") => {
                    while let Some(first) = segments.first() {
                        match first.as_str() {
                            "super" => {
                                base.pop();
                            }
                            "self" => {}
                            _ => break,
                        }
                        segments = &segments[1..];
                    }
                }
                Some(first) => {
                    let mut child = module.to_vec();
                    child.push(first.to_owned());
                    if !modules.contains(&child) {
                        continue;
                    }
                }
                None => continue,
            }
            base.extend(segments.iter().cloned());
            found.push(base);
        }
    }
    found
}

/// The node `path` lands in: that of the deepest module it names, or, where that
/// module re-exports the name after it from a submodule (`pub use quota::QuotaRule`),
/// that submodule's.
fn target_of(
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
    reexports: &BTreeMap<Vec<String>, Vec<String>>,
) -> Option<String> {
    let mut depth = (1..=path.len())
        .rev()
        .find(|n| modules.contains(&path[..*n]))?;
    let mut module = path[..depth].to_vec();
    while depth < path.len() {
        let mut named = module.clone();
        named.push(path[depth].clone());
        match reexports.get(&named) {
            Some(from) => module = from.clone(),
            None => break,
        }
        depth += 1;
    }
    Some(node_of(&module))
}

/// The import graph of `src`: for each node, the nodes it uses. A split module and
/// its own submodules are left unlinked: the module declares them and hands their
/// names on, and they use the types it holds.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let files: Vec<(Vec<String>, String)> = files
        .iter()
        .map(|f| (module_of(src, f), code_of(f)))
        .filter(|(m, _)| !m.is_empty())
        .collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut reexports = BTreeMap::new();
    for (module, code) in &files {
        for line in code.lines().map(str::trim) {
            let Some(tree) = line.strip_prefix("pub use ") else {
                continue;
            };
            let text = format!("self::{tree}");
            for path in named_paths(&text, module, &modules) {
                let from = (1..=path.len())
                    .rev()
                    .map(|n| &path[..n])
                    .find(|p| modules.contains(*p));
                if let (Some(from), Some(name)) = (from, path.last())
                    && from.len() > module.len()
                    && from.starts_with(module)
                {
                    let mut named = module.clone();
                    named.push(name.clone());
                    reexports.insert(named, from.to_vec());
                }
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &files {
        let from = node_of(module);
        let edges = graph.entry(from.clone()).or_default();
        for path in named_paths(code, module, &modules) {
            let Some(to) = target_of(&path, &modules, &reexports) else {
                continue;
            };
            let nested =
                to.starts_with(&format!("{from}::")) || from.starts_with(&format!("{to}::"));
            if to != from && !nested {
                edges.insert(to);
            }
        }
    }
    graph
}

/// Every circle of `graph`, each once, as its nodes from the smallest one round.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                out.push(path.clone());
            } else if next.as_str() > start && !path.contains(next) {
                path.push(next.clone());
                walk(graph, start, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in graph.keys() {
        walk(graph, start, &mut vec![start.clone()], &mut out);
    }
    out
}

#[test]
fn no_module_imports_in_a_circle() {
    // Arrange
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Act
    let graph = import_graph(&src);
    let found = circles(&graph);
    // Assert
    let shown: Vec<String> = found
        .iter()
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(
        found.is_empty(),
        "modules that import each other ({} circles); move what they share to one side:\n{}",
        found.len(),
        shown.join("\n")
    );
}

#[test]
fn the_import_reader_follows_groups_super_and_reexports() {
    let module = vec!["storage".to_owned(), "watch".to_owned()];
    let modules: BTreeSet<Vec<String>> = [
        vec!["storage"],
        vec!["storage", "watch"],
        vec!["storage", "transport"],
        vec!["accounts"],
        vec!["accounts", "quota"],
        vec!["db"],
    ]
    .into_iter()
    .map(|m| m.into_iter().map(str::to_owned).collect())
    .collect();
    let code = "use crate::{db::{self, Db}, accounts::QuotaRule};\n\
                let c = super::transport::lock(&clock);\n\
                use std::sync::Arc;";
    let paths: Vec<String> = named_paths(code, &module, &modules)
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        paths,
        [
            "db::self",
            "db::Db",
            "accounts::QuotaRule",
            "storage::transport::lock"
        ]
    );
    let reexports = BTreeMap::from([(
        vec!["accounts".to_owned(), "QuotaRule".to_owned()],
        vec!["accounts".to_owned(), "quota".to_owned()],
    )]);
    let to = |p: &str| {
        let path: Vec<String> = p.split("::").map(str::to_owned).collect();
        target_of(&path, &modules, &reexports)
    };
    assert_eq!(
        to("accounts::QuotaRule").as_deref(),
        Some("accounts::quota")
    );
    assert_eq!(
        to("storage::transport::lock").as_deref(),
        Some("storage::transport")
    );
    assert_eq!(to("db::Db").as_deref(), Some("db"));
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        (
            "b".to_owned(),
            BTreeSet::from(["a".to_owned(), "c".to_owned()]),
        ),
        ("c".to_owned(), BTreeSet::new()),
    ]);
    assert_eq!(circles(&graph), [vec!["a".to_owned(), "b".to_owned()]]);
}

/// The layer of each top-level module, read from `lib.rs`: its modules stand in
/// groups, each opened by a comment line, front ends first and infrastructure last;
/// the first group is layer 0. A module outside every group is a failure of its own.
fn layers_of(lib: &str) -> BTreeMap<String, usize> {
    let mut layers = BTreeMap::new();
    let mut layer: Option<usize> = None;
    let mut in_comment = false;
    for line in lib.lines().map(str::trim) {
        if line.starts_with("//!") {
            continue;
        }
        if line.starts_with("//") {
            if !in_comment {
                layer = Some(layer.map_or(0, |l| l + 1));
            }
            in_comment = true;
            continue;
        }
        in_comment = false;
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'))
        {
            let layer =
                layer.unwrap_or_else(|| panic!("lib.rs: `{name}` stands before every group"));
            layers.insert(name.to_owned(), layer);
        }
    }
    layers
}

/// Every edge of `graph` from a module to one in a group above its own, as
/// `from -> to`.
fn upward(
    graph: &BTreeMap<String, BTreeSet<String>>,
    layers: &BTreeMap<String, usize>,
) -> Vec<String> {
    let layer = |node: &str| {
        let top = node.split("::").next().unwrap_or(node);
        *layers
            .get(top)
            .unwrap_or_else(|| panic!("`{top}` is in no group of lib.rs"))
    };
    let mut out = Vec::new();
    for (from, tos) in graph {
        for to in tos {
            if layer(to) < layer(from) {
                out.push(format!("{from} -> {to}"));
            }
        }
    }
    out
}

#[test]
fn no_module_imports_one_in_a_group_above_its_own() {
    // Arrange
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layers = layers_of(&lib);
    // Act
    let graph = import_graph(&root.join("src"));
    let found = upward(&graph, &layers);
    // Assert
    let groups = layers.values().max().map_or(0, |l| l + 1);
    assert_eq!(
        groups, 3,
        "lib.rs holds front ends, features and infrastructure: {layers:?}"
    );
    assert!(
        found.is_empty(),
        "modules that import one in a group above their own in lib.rs ({}); move what \
         they use down, or the module up:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_layer_reader_sees_groups_and_upward_edges() {
    let lib = "//! The crate.\n\n// Front ends.\npub mod api;\n\n// Features: they own\n\
               // their rules.\npub mod scrub;\n\n// Infrastructure.\npub mod db;\nmod time;\n";
    let layers = layers_of(lib);
    assert_eq!(
        layers,
        BTreeMap::from([
            ("api".to_owned(), 0),
            ("scrub".to_owned(), 1),
            ("db".to_owned(), 2),
            ("time".to_owned(), 2),
        ])
    );
    let graph = BTreeMap::from([
        (
            "api::files".to_owned(),
            BTreeSet::from(["scrub".to_owned(), "db".to_owned()]),
        ),
        (
            "db".to_owned(),
            BTreeSet::from(["scrub".to_owned(), "time".to_owned()]),
        ),
        ("time".to_owned(), BTreeSet::from(["api::files".to_owned()])),
    ]);
    assert_eq!(
        upward(&graph, &layers),
        ["db -> scrub", "time -> api::files"]
    );
}

/// The modules `code` renames on import with `as` (`use a::b as c`, `{self as c}`):
/// a path whose last name is lower case or `self`. Types and constants renamed to
/// avoid a clash (`Error as E`) and `as _`, which brings a trait's methods in without
/// a name, are left out.
fn renamed_imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| !c.is_whitespace() && c != '{' && c != ';') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        let statement = &rest[..end];
        let words: Vec<&str> = statement
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | '}'))
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(3) {
            let renamed = pair[0].rsplit("::").next().unwrap_or(pair[0]);
            let module = renamed.starts_with(|c: char| c.is_ascii_lowercase());
            if pair[1] == "as" && pair[2] != "_" && module {
                out.push(format!("{} as {}", pair[0], pair[2]));
            }
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn no_module_is_renamed_on_import() {
    // Arrange
    let (_, files) = source_files();
    // Act
    let mut found = Vec::new();
    for (file, rel) in &files {
        for renamed in renamed_imports(&code_of(file)) {
            found.push(format!("src/{rel}: {renamed}"));
        }
    }
    // Assert
    assert!(
        found.is_empty(),
        "imports renamed with `as` ({}); name the module by its own path, so every \
         caller calls it the same:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_rename_reader_sees_modules_in_groups_and_skips_types_and_traits() {
    let code = "use crate::db::copies as queue;\n\
                use crate::db::scrub::{self as record, Intact};\n\
                use std::fmt::Write as _;\n\
                let focus = 1 as i64; // not an import\n\
                use object_store::Error as E;\n\
                pub use super::{quota as q, QuotaRule as Rule};";
    assert_eq!(
        renamed_imports(code),
        ["crate::db::copies as queue", "self as record", "quota as q"]
    );
}

#[test]
fn only_the_command_line_knows_clap() {
    // Arrange
    let (_, files) = source_files();
    // Act
    let mut found = Vec::new();
    for (file, rel) in &files {
        if rel.starts_with("app/") || rel == "main.rs" {
            continue;
        }
        for line in code_of(file).lines() {
            if line.contains("clap") {
                found.push(format!("src/{rel}: {}", line.trim()));
            }
        }
    }
    // Assert
    assert!(
        found.is_empty(),
        "clap outside src/app/ and main.rs ({}); give the command line a type of its own \
         and convert it into the domain type:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// Where `line` reads a column by its position (`try_get(0)`, `try_get::<T, _>(3)`).
fn positional_read(line: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find("try_get") {
        rest = &rest[at + "try_get".len()..];
        let args = match rest.strip_prefix("::<") {
            // Past the type arguments, which hold no parenthesis.
            Some(types) => types.find('(').map_or("", |open| &types[open..]),
            None => rest,
        };
        if args
            .strip_prefix('(')
            .is_some_and(|a| a.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        {
            return true;
        }
    }
    false
}

#[test]
fn rows_are_read_by_column_name() {
    // Arrange
    let (_, files) = source_files();
    // Act
    let mut found = Vec::new();
    for (file, rel) in &files {
        for line in code_of(file).lines().filter(|l| positional_read(l)) {
            found.push(format!("src/{rel}: {}", line.trim()));
        }
    }
    // Assert
    assert!(
        found.is_empty(),
        "columns read by position ({}); read them by name (alias a computed column with \
         AS), so a column added to a SELECT cannot shift them:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_positional_read_check_sees_indices_with_and_without_types() {
    assert!(positional_read("object_id: r.try_get(0)?,"));
    assert!(positional_read(
        "state: r.try_get::<Option<String>, _>( 12)?,"
    ));
    assert!(!positional_read("object_id: r.try_get(\"object_id\")?,"));
    assert!(!positional_read(
        "let n: i64 = r.try_get::<i64, _>(\"copies\")?;"
    ));
}

/// Where `text` names the number 10,000 as a literal (`10_000` or `10000`, not part of
/// a longer number or a name such as `fits_in_10000_parts`).
fn has_ten_thousand(text: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    ["10_000", "10000"].iter().any(|literal| {
        text.match_indices(literal).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let after = text[i + literal.len()..].chars().next();
            !before.is_some_and(name_char) && !after.is_some_and(name_char)
        })
    })
}

#[test]
fn shared_limits_are_defined_once() {
    // Arrange: S3's part limit lives in storage/limits.rs, and the one conversion of
    // a duration into the milliseconds of the timestamp columns in time.rs.
    let (src, files) = source_files();
    let parts_home = src.join("storage").join("limits.rs");
    let millis_home = src.join("time.rs");
    // Act
    let mut found = Vec::new();
    for (file, shown) in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            // A part limit: 10,000 within two lines of the word "part". utoipa's
            // `max_items` takes only a literal; a unit test of api::uploads holds it to
            // MAX_PARTS.
            let near = &lines[n.saturating_sub(2)..(n + 3).min(lines.len())];
            let about_parts = near.iter().any(|l| l.to_lowercase().contains("part"))
                && !line.trim_start().starts_with("#[schema(");
            let what = if *file != parts_home && line.contains("const MAX_PARTS") {
                "a second MAX_PARTS; use storage::limits::MAX_PARTS"
            } else if *file != parts_home && has_ten_thousand(line) && about_parts {
                "S3's part limit written out; use storage::limits::MAX_PARTS"
            } else if *file != millis_home && line.contains("fn millis(") {
                "a second millis; use time::millis"
            } else if *file != millis_home && line.contains("as_millis()") && line.contains("i64") {
                "a duration turned into i64 milliseconds by hand; use time::millis"
            } else {
                continue;
            };
            found.push(format!("src/{shown}:{}: {what}: {}", n + 1, line.trim()));
        }
    }
    // Assert
    assert!(
        found.is_empty(),
        "shared limits defined outside their home ({} lines):\n{}",
        found.len(),
        found.join("\n")
    );
    assert!(has_ten_thousand("(1..=10_000)") && has_ten_thousand("max_items = 10000)"));
    assert!(!has_ten_thousand("fits_in_10000_parts") && !has_ten_thousand("100_000"));
}
