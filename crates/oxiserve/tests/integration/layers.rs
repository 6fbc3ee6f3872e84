//! The core's modules form layers: no file imports, directly or through others, a file that
//! imports it back. Read from the sources: every `crate::`, `super::` and `self::` path, and
//! every `child::` path through a `mod child;` the file declares, outside comments and
//! `#[cfg(test)] mod tests`, is an edge to the deepest module file it names (a child naming its
//! own parent module is not an edge: the parent holds it). The top-level modules form layers
//! too: collapsed to them, the edges have no cycle either. The layers are listed in
//! `docs/architecture.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`model::worker`, `crate` for `lib.rs`) to its source.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, found: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().with_extension("");
                let name = relative.to_str().unwrap().trim_end_matches("/mod").replace('/', "::");
                let name = if name == "lib" { "crate".to_string() } else { name };
                found.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    walk(&root, &root, &mut found);
    found
}

/// The code of `source` without comments and without its unit tests.
fn code(source: &str) -> String {
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b`, `super::x` or `self::y` path in `code`, braces expanded one level,
/// and every `child::x` path through a child module `code` declares (as `self::child::x`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let children = code.lines().filter_map(|line| {
        let line = line.trim_start();
        let declared = line
            .split_once("mod ")
            .filter(|(visibility, _)| visibility.is_empty() || visibility.starts_with("pub"))?;
        declared.1.strip_suffix(';').map(str::to_string)
    });
    for child in children.collect::<Vec<_>>() {
        let named = format!("{child}::");
        let used = code.match_indices(&named).any(|(at, _)| {
            !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
        });
        if used {
            found.push(vec!["self".to_string(), child]);
        }
    }
    for (start, _) in code.match_indices(['c', 's']) {
        let rest = &code[start..];
        let word_start =
            start == 0 || !code[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if !word_start || !["crate::", "super::", "self::"].iter().any(|p| rest.starts_with(p)) {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let head: Vec<String> =
            rest[..end].split("::").filter(|s| !s.is_empty()).map(String::from).collect();
        if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
            let inner = &rest[end + 1..rest[end..].find('}').map_or(end + 1, |i| end + i)];
            for item in inner.split(',') {
                let item = item.trim().split(" as ").next().unwrap_or_default();
                let mut path = head.clone();
                path.extend(item.split("::").filter(|s| !s.is_empty()).map(String::from));
                found.push(path);
            }
        } else {
            found.push(head);
        }
    }
    found
}

/// The deepest module that `path`, written in module `from`, names.
fn target(from: &str, path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut base: Vec<&str> = if from == "crate" { vec![] } else { from.split("::").collect() };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => base.clear(),
        Some("self") => {}
        Some("super") => {
            while rest.first().is_some_and(|p| p == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let rest = if path[0] == "super" { rest } else { &rest[1..] };
    (1..=rest.len()).rev().find_map(|n| {
        let candidate: Vec<&str> =
            base.iter().copied().chain(rest[..n].iter().map(String::as_str)).collect();
        let candidate = candidate.join("::");
        modules.contains(&candidate).then_some(candidate)
    })
}

#[test]
fn the_core_files_and_modules_import_one_another_without_a_cycle() {
    let sources = sources();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in &sources {
        let targets = edges.entry(module).or_default();
        for path in paths(&code(source)) {
            if let Some(to) = target(module, &path, &modules) {
                let parent = module.starts_with(&format!("{to}::"));
                if to != *module && to != "crate" && !parent {
                    targets.insert(to);
                }
            }
        }
    }
    assert!(edges["engine"].contains("pipeline"), "the reading finds edges: {edges:?}");
    // The top-level modules too: `a::x` importing `b::y` is an edge from `a` to `b`.
    let top = |module: &str| module.split("::").next().unwrap_or_default().to_string();
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &edges {
        let outside = targets.iter().map(|to| top(to)).filter(|to| *to != top(from));
        modules.entry(top(from)).or_default().extend(outside);
    }
    let modules: BTreeMap<&str, BTreeSet<String>> =
        modules.iter().map(|(name, targets)| (name.as_str(), targets.clone())).collect();
    // Depth-first search for a path back to where it started.
    fn cycle<'a>(
        at: &'a str,
        edges: &'a BTreeMap<&str, BTreeSet<String>>,
        trail: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = trail.iter().position(|m| *m == at) {
            return Some(trail[start..].iter().chain([&at]).map(|m| m.to_string()).collect());
        }
        if !done.insert(at) {
            return None;
        }
        trail.push(at);
        let found =
            edges.get(at).into_iter().flatten().find_map(|to| cycle(to, edges, trail, done));
        trail.pop();
        found
    }
    for graph in [&edges, &modules] {
        let mut done = BTreeSet::new();
        for module in graph.keys() {
            let found = cycle(module, graph, &mut Vec::new(), &mut done);
            assert!(found.is_none(), "an import cycle: {}", found.unwrap().join(" -> "));
        }
    }
}
