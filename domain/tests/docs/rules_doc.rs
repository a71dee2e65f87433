//! docs/rules.md is the one place Parley's domain rules are written down,
//! and code everywhere cites them by id, e.g. "(M3)", "B2–B4" or the older
//! "DESIGN.md M9". These tests keep the two in step:
//!
//! - every rule id cited in the repository's Rust, Markdown, SQL, TOML and
//!   TypeScript files is defined in docs/rules.md (a `### <id> <title>`
//!   heading);
//! - docs/rules.md numbers each series 1, 2, 3… without gaps, gives each
//!   rule one paragraph, and every test that paragraph names exists as a
//!   `fn` in the file it names (if it moved, the failure says where to).
//!
//! A citation is a series letter (see [`SERIES`]) and one or two digits
//! standing alone as a word, optionally a range to another id (`M1–M11`,
//! `M1-M10`, `B2–4`). Not citations: ids inside identifiers or hex (`xM1`,
//! `0xC0`, `M12a`), path segments such as `IpAddr::V4`, and letters that
//! are not a series (`T0`, `F8`, `Q1`). Scheduled sessions are the `A`
//! series rather than `S` because the recording store names Amazon S3.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The rule series of docs/rules.md: metering, billing, appointments,
/// recording, reviews, promotions, concurrency, disputes, escrow, LiveKit.
const SERIES: [char; 10] = ['M', 'B', 'A', 'R', 'V', 'P', 'C', 'D', 'E', 'L'];

/// File extensions searched for citations.
const SCANNED: [&str; 5] = ["rs", "md", "sql", "toml", "ts"];

/// A rule id: series letter and number.
type RuleId = (char, u32);

fn show(id: RuleId) -> String {
    format!("{}{}", id.0, id.1)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// One rule of docs/rules.md: its id, the line of its heading and its text.
struct Rule {
    id: RuleId,
    line: usize,
    body: Vec<String>,
}

/// Parses a whole id such as `M11` (no range, nothing around it).
fn parse_id(word: &str) -> Option<RuleId> {
    let mut chars = word.chars();
    let letter = chars.next().filter(char::is_ascii_uppercase)?;
    let digits = chars.as_str();
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((letter, digits.parse().ok()?))
}

/// The rules of docs/rules.md, in document order: every `### <id> …`
/// heading and the lines up to the next heading.
fn rules(doc: &str) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut current: Option<Rule> = None;
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with('#') {
            out.extend(current.take());
            let heading = line.strip_prefix("### ").unwrap_or_default();
            let first = heading.split_whitespace().next().unwrap_or_default();
            current = parse_id(first).map(|id| Rule { id, line: i + 1, body: Vec::new() });
        } else if let Some(rule) = current.as_mut() {
            rule.body.push(line.to_owned());
        }
    }
    out.extend(current);
    out
}

fn defined_ids() -> BTreeSet<RuleId> {
    let doc = fs::read_to_string(repo_root().join("docs/rules.md")).expect("docs/rules.md exists");
    rules(&doc).iter().map(|r| r.id).collect()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads one or two ASCII digits at the start of `s` that do not run on
/// into a word: the number and the bytes read.
fn number_at(s: &str) -> Option<(u32, usize)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || len > 2 || s[len..].chars().next().is_some_and(is_word) {
        return None;
    }
    Some((s[..len].parse().ok()?, len))
}

/// The rule ids `text` cites, a range standing for every id in it.
fn citations(text: &str) -> Vec<RuleId> {
    let mut out = Vec::new();
    // Where the last range read ended: its second id is not read again.
    let mut read_to = 0;
    for (i, letter) in text.char_indices() {
        if i < read_to || !SERIES.contains(&letter) {
            continue;
        }
        let before = &text[..i];
        if before.chars().next_back().is_some_and(is_word) || before.ends_with("::") {
            continue;
        }
        let rest = &text[i + 1..];
        let Some((first, len)) = number_at(rest) else { continue };
        let mut last = first;
        let after = &rest[len..];
        if let Some(range) = after.strip_prefix('–').or_else(|| after.strip_prefix('-')) {
            let range = range.strip_prefix(letter).unwrap_or(range);
            if let Some((to, to_len)) = number_at(range).filter(|(to, _)| *to > first) {
                last = to;
                read_to = text.len() - range.len() + to_len;
            }
        }
        out.extend((first..=last).map(|n| (letter, n)));
    }
    out
}

/// Every file under `dir` with one of the [`SCANNED`] extensions, skipping
/// hidden folders, `node_modules` and build output (`target`, and any
/// folder cargo tagged with `CACHEDIR.TAG`).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let skip = name.starts_with('.')
                || name == "target"
                || name == "node_modules"
                || path.join("CACHEDIR.TAG").exists();
            if !skip {
                files(&path, out);
            }
        } else if kind.is_file() && path.extension().is_some_and(|e| SCANNED.iter().any(|s| e == *s)) {
            out.push(path);
        }
    }
}

/// Whether `source` defines a function `name` (`fn name(` or `fn name<`).
fn defines_fn(source: &str, name: &str) -> bool {
    source
        .match_indices(&format!("fn {name}"))
        .any(|(i, m)| source[i + m.len()..].starts_with(['(', '<']) && !source[..i].ends_with(is_word))
}

#[test]
fn every_cited_rule_is_defined_in_docs_rules_md() {
    let root = repo_root();
    let defined = defined_ids();
    let mut scanned = Vec::new();
    files(&root, &mut scanned);
    scanned.sort();
    let mut undefined: Vec<String> = Vec::new();
    let mut cited = 0;
    for path in &scanned {
        let Ok(text) = fs::read_to_string(path) else { continue };
        for (n, line) in text.lines().enumerate() {
            for id in citations(line) {
                cited += 1;
                if !defined.contains(&id) {
                    let file = path.strip_prefix(&root).unwrap_or(path).display();
                    undefined.push(format!("{file}:{}: {} is not defined in docs/rules.md", n + 1, show(id)));
                }
            }
        }
    }
    assert!(
        cited > 100,
        "the scan found only {cited} citations in {} files: is it looking in the right place?",
        scanned.len()
    );
    assert!(undefined.is_empty(), "rule ids cited but not defined:\n{}", undefined.join("\n"));
}

#[test]
fn docs_rules_md_numbers_each_series_and_names_tests_that_exist() {
    let root = repo_root();
    let doc = fs::read_to_string(root.join("docs/rules.md")).expect("docs/rules.md exists");
    let rules = rules(&doc);
    let mut problems: Vec<String> = Vec::new();
    let mut numbers: BTreeMap<char, Vec<u32>> = BTreeMap::new();
    // Every Rust file of the workspace, by its path from the root.
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let sources: BTreeMap<String, String> = paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| Some((p.strip_prefix(&root).ok()?.to_string_lossy().into_owned(), fs::read_to_string(p).ok()?)))
        .collect();
    for rule in &rules {
        let at = format!("docs/rules.md:{} ({})", rule.line, show(rule.id));
        if !SERIES.contains(&rule.id.0) {
            problems.push(format!("{at}: `{}` is not a series the citation check knows ({SERIES:?})", rule.id.0));
        }
        numbers.entry(rule.id.0).or_default().push(rule.id.1);
        // One paragraph: no blank line between its first and last line.
        let text: Vec<&str> = rule.body.iter().map(|l| l.trim()).skip_while(|l| l.is_empty()).collect();
        let len = text.iter().rposition(|l| !l.is_empty()).map_or(0, |i| i + 1);
        let text = &text[..len];
        if text.is_empty() || text.contains(&"") {
            problems.push(format!("{at}: a rule is exactly one paragraph"));
        }
        let paragraph = text.join(" ");
        let Some((_, tests)) = paragraph.split_once("Tests:") else {
            problems.push(format!("{at}: the paragraph ends with `Tests:` and the tests that check it"));
            continue;
        };
        // `path`: `test`, `test`; `path`: `test`.
        for part in tests.split(';') {
            let ticked: Vec<&str> = part.split('`').skip(1).step_by(2).collect();
            let Some((file, names)) = ticked.split_first().filter(|(f, n)| f.ends_with(".rs") && !n.is_empty()) else {
                problems.push(format!("{at}: `{}` is not \"`file.rs`: `test`, …\"", part.trim()));
                continue;
            };
            for name in names {
                if sources.get(*file).is_some_and(|source| defines_fn(source, name)) {
                    continue;
                }
                let elsewhere: Vec<&str> =
                    sources.iter().filter(|(_, source)| defines_fn(source, name)).map(|(p, _)| p.as_str()).collect();
                if elsewhere.is_empty() {
                    problems.push(format!("{at}: no `fn {name}` in {file} nor anywhere else"));
                } else {
                    problems.push(format!("{at}: `fn {name}` is not in {file} but in {}", elsewhere.join(", ")));
                }
            }
        }
    }
    for letter in SERIES {
        let got = numbers.remove(&letter).unwrap_or_default();
        let want: Vec<u32> = (1..=u32::try_from(got.len()).unwrap_or(0)).collect();
        if got.is_empty() || got != want {
            problems.push(format!("series {letter} is numbered {got:?}: it must run 1, 2, 3… in order"));
        }
    }
    assert!(rules.len() >= 19, "M1–M11 and B1–B8 at least; found {} rules", rules.len());
    assert!(problems.is_empty(), "docs/rules.md:\n{}", problems.join("\n"));
}

#[test]
fn citations_are_rule_ids_standing_alone() {
    let ids = |t: &str| citations(t).into_iter().map(show).collect::<Vec<_>>();
    assert_eq!(ids("the grace period (DESIGN.md M3)"), ["M3"]);
    assert_eq!(ids("(B3, <https://docs.stripe.com>) and M10's ±1 s"), ["B3", "M10"]);
    assert_eq!(ids("DESIGN.md B2–B4, B6"), ["B2", "B3", "B4", "B6"]);
    assert_eq!(ids("meter (DESIGN.md M1-M3)"), ["M1", "M2", "M3"]);
    assert_eq!(ids("A1–3"), ["A1", "A2", "A3"]);
    assert_eq!(ids("// M8: warned"), ["M8"]);
    assert_eq!(ids("\"M10: {:?}\""), ["M10"]);
    assert!(ids("IpAddr::V4(v4), RecordingStore::S3 { bucket }").is_empty());
    assert!(ids("const T0: i64; F8 FF FE; Q1 2024; Q7.8 dB").is_empty());
    assert!(ids("0xC0 xM1 M1x M123 a_B2 B2a").is_empty());
    assert!(ids("an S3 bucket").is_empty());
}
