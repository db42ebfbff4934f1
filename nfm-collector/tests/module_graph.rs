//! The collector is a one-way pipeline (issue 18): actors depend on shared modules (`pipeline`,
//! `resolution`, `flow_table`, `summary`, `model`, ...), never on one another, and no module
//! imports another that imports it back. This reads `src/` and checks both, so a newcomer's
//! `use crate::aggregator::...` in the API fails here with the offending path, not in review.
//!
//! A module is a top-level file or directory of `src/` (`health/judge.rs` belongs to `health`).
//! Test code (from a column-0 `#[cfg(test)]` on) and comments are not part of the graph: a test
//! may drive two actors together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The actors: each runs on its own thread and talks to the others only through messages.
const ACTORS: &[&str] = &[
    "ingest",
    "resolver",
    "aggregator",
    "health_stage",
    "store",
    "api",
    // issue 16: the remote writer (fed by the store through `pipeline::RemoteWriteMsg`)
    "remote_write",
];

/// The one module allowed to name every actor: it wires them together.
const WIRING: &str = "collector";

fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src");
    let s = first.as_os_str().to_string_lossy();
    s.trim_end_matches(".rs").to_string()
}

/// Production code of a file: up to its first column-0 `#[cfg(test)]`, without comments.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Modules named by `crate::name` paths (also inside `use crate::{a::X, b::Y}` groups).
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let m = module_of(p.strip_prefix(&src).expect("under src"));
                let text = std::fs::read_to_string(&p).expect("read source");
                let deps = imports(&production_code(&text));
                let entry = g.entry(m.clone()).or_default();
                entry.extend(deps.into_iter().filter(|d| *d != m));
            }
        }
    }
    // Names that are not modules (e.g. a crate-root re-export) are not edges.
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    g
}

/// A cycle, if any, as the list of modules along it.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(m.to_string(), Mark::Open);
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            match marks.get(d).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path
                        .iter()
                        .position(|x| x == d)
                        .expect("open is on the path");
                    let mut cycle = path[start..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, g, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in g.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(m, g, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn test_no_module_cycle() {
    let g = graph();
    if let Some(c) = find_cycle(&g) {
        panic!(
            "import cycle among nfm-collector modules: {}",
            c.join(" -> ")
        );
    }
}

#[test]
fn test_actors_depend_only_on_shared_modules() {
    let g = graph();
    let mut bad = Vec::new();
    for (m, deps) in &g {
        if m == WIRING {
            continue;
        }
        for d in deps {
            if ACTORS.contains(&d.as_str()) {
                bad.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "only `{WIRING}` may name an actor module; found: {}",
        bad.join(", ")
    );
}

#[test]
fn test_cycle_finder_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let e = |a: &str, b: &str| (a.to_string(), BTreeSet::from([b.to_string()]));
    g.extend([e("a", "b"), e("b", "c"), e("c", "a"), e("d", "a")]);
    let c = find_cycle(&g).expect("a cycle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    g.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
    assert_eq!(
        imports("use crate::{model::X, summary::Y};\nlet _ = crate::topology::T;"),
        BTreeSet::from(["model".into(), "summary".into(), "topology".into()])
    );
}
