//! Tests of the source layout (the areas' import graph and file sizes),
//! read from `server/src` at test time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The folders of `server/src` that are areas.
const AREAS: [&str; 8] = ["sessions", "bookings", "profiles", "reviews", "recordings", "webhooks", "disputes", "media"];

/// The longest a source file may be, lines.
const MAX_LINES: usize = 700;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`bookings` for
/// `src/bookings/http.rs`, `routes` for `src/routes.rs`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src_dir()).expect("under src");
    let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// `(module, submodule)` for each `crate::module::submodule` path a file
/// names (in `use` lines and inline paths; doc links and comments too,
/// which is stricter than needed).
fn crate_paths(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let word = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
        let module = word(rest);
        let after = &rest[module.len()..];
        let sub = after.strip_prefix("::").map(word).unwrap_or_default();
        out.insert((module, sub));
    }
    out
}

/// Which area imports which (and through which submodule).
fn area_imports() -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut edges: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in rust_files(&src_dir()) {
        let from = module_of(&file);
        let text = std::fs::read_to_string(&file).expect("readable file");
        for (module, sub) in crate_paths(&text) {
            if module != from {
                edges.entry(from.clone()).or_default().insert((module, sub));
            }
        }
    }
    edges
}

#[test]
fn the_kernel_and_the_store_import_no_area() {
    let edges = area_imports();
    for base in ["kernel", "store"] {
        let bad: Vec<_> = edges.get(base).into_iter().flatten().filter(|(m, _)| AREAS.contains(&m.as_str())).collect();
        assert!(bad.is_empty(), "{base} imports areas: {bad:?}");
    }
    let store_uses_kernel = edges.get("store").into_iter().flatten().any(|(m, _)| m == "kernel");
    assert!(!store_uses_kernel, "the store imports the kernel (the kernel imports the store)");
}

#[test]
fn areas_import_no_other_area_handlers_and_form_no_loop() {
    let edges = area_imports();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for area in AREAS {
        for (module, sub) in edges.get(area).into_iter().flatten() {
            if let Some(to) = AREAS.iter().find(|a| **a == module) {
                assert_ne!(sub, "http", "{area} imports the handlers of {to}");
                graph.entry(area).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|n| *n == node) {
            panic!("import loop between areas: {:?}", [&path[at..], &[node]].concat());
        }
        if done.contains(node) {
            return;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for area in AREAS {
        visit(area, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn no_source_file_is_over_700_lines() {
    for file in rust_files(&src_dir()) {
        let lines = std::fs::read_to_string(&file).expect("readable file").lines().count();
        assert!(lines <= MAX_LINES, "{} has {lines} lines", file.display());
    }
}

#[test]
fn crate_paths_are_read_from_use_lines_and_inline_paths() {
    let paths = crate_paths("use crate::bookings::http::router;\nlet x = crate::kernel::ApiError::Internal;");
    assert!(paths.contains(&("bookings".into(), "http".into())));
    assert!(paths.contains(&("kernel".into(), "ApiError".into())));
}
