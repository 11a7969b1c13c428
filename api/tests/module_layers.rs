//! The API's modules form layers: no module imports, directly or through others, a module that
//! imports it back (ARCHITECTURE.md, code map). Read from the sources: every `crate::…` path
//! outside comments and test modules is an edge between top-level modules (`lib.rs`, the crate
//! root that mounts everything, is not a node).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let module_of = |path: &Path| -> Option<String> {
        let relative = path.strip_prefix(&src).ok()?;
        let first = relative.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
        (first != "lib" && first != "main").then_some(first)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else { continue };
        let text = std::fs::read_to_string(file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let names = graph.entry(module.clone()).or_default();
        for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                // `crate::{a, b::c}` names several modules at once.
                let group = match rest.strip_prefix('{') {
                    Some(inner) => inner.split('}').next().unwrap_or_default().to_string(),
                    None => rest.to_string(),
                };
                for item in group.split(',') {
                    let name: String =
                        item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if modules.contains(&name) && name != module {
                        names.insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// A path `from` → … → `from`, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("non-empty");
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(from.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = edges();
    assert!(graph.contains_key("routes") && graph.contains_key("store"), "read the sources: {graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_through(&graph, m)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles between the API's modules:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_crate_root_mounts_the_routes() {
    let graph = edges();
    let into_routes: Vec<&String> = graph.iter().filter(|(_, to)| to.contains("routes")).map(|(m, _)| m).collect();
    assert!(into_routes.is_empty(), "modules that reach into routes/: {into_routes:?}");
}
