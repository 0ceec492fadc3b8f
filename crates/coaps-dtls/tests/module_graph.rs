//! The module import graph of `coaps-dtls` has no cycles.
//!
//! Every `crate::…` and `super::…` path in the crate's non-test sources is an edge from the
//! module whose file holds it to the deepest module the path names. The graph is checked at
//! two granularities:
//!
//! * between top-level modules (`crate::types`, `crate::dtls13`, …): no cycle at all, so the
//!   vocabulary at the bottom (`types`, `codec`, `error`) never needs a state machine and the
//!   engines never need the public facade;
//! * between files: every cycle found is printed (`cargo test --test module_graph -- --nocapture`
//!   shows the whole graph). The ones left are listed in [`KNOWN_FILE_CYCLES`], each an engine
//!   whose one association struct still has `impl` blocks in two files; any other cycle, or a
//!   listed one that is gone (so the list is kept honest), fails.
//!
//! A source scan instead of a `cargo-modules` run keeps the check in the test suite with no
//! extra tool to install; it reads `use` lines and inline paths, which is where Rust modules
//! name each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// File-level cycles that exist today, sorted. An engine split into one struct per handshake
/// state removes them; until then they are the only ones allowed. (DTLS 1.3 has none since
/// its split into `engine`, `client`, `server`, `early` and `conn`.)
const KNOWN_FILE_CYCLES: &[&[&str]] = &[];

/// `a/b/mod.rs` → `a::b`, `a/b.rs` → `a::b`, `lib.rs` → `` (the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> =
        fs::read_dir(dir).expect("readable src dir").map(|e| e.expect("dir entry").path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if p.is_dir() {
            // Unit-test trees reach into their parents by design and are not part of the crate.
            if name != "tests" {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "fuzzing.rs" {
            out.push(p);
        }
    }
}

/// The source without comments and without inline `#[cfg(test)] mod … { … }` blocks.
fn production_source(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if skip_depth.is_none() {
            if trimmed == "#[cfg(test)]" {
                pending_cfg_test = true;
                continue;
            }
            let item =
                trimmed.trim_start_matches("pub(crate) ").trim_start_matches("pub(super) ").trim_start_matches("pub ");
            if pending_cfg_test && item.starts_with("mod ") && trimmed.ends_with('{') {
                skip_depth = Some(depth);
            }
            pending_cfg_test = false;
        }
        for ch in code.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        match skip_depth {
            Some(d) if depth <= d => skip_depth = None,
            Some(_) => {}
            None => {
                out.push_str(code);
                out.push('\n');
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths named after each `crate::` / `super::` / `child::` (a module declared by
/// this one), brace groups of `use` included.
fn referenced_paths(module: &str, children: &[String], code: &str) -> Vec<Vec<String>> {
    let here: Vec<String> =
        if module.is_empty() { Vec::new() } else { module.split("::").map(str::to_owned).collect() };
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let prev_ok = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != ':';
        let (base, skip) = if prev_ok && rest.starts_with("crate::") {
            (Vec::new(), 7)
        } else if prev_ok && rest.starts_with("super::") {
            let mut b = here.clone();
            let mut j = i;
            while bytes[j..].iter().take(7).collect::<String>() == "super::" {
                b.pop();
                j += 7;
            }
            (b, j - i)
        } else if let Some(c) = children
            .iter()
            .find(|c| prev_ok && bytes[i..].iter().take(c.len() + 2).collect::<String>() == format!("{c}::"))
        {
            // `child::x` is as much a use of the child as `crate::this::child::x`; `collect_tail`
            // re-reads the child's name.
            let _ = c;
            (here.clone(), 0)
        } else {
            i += 1;
            continue;
        };
        i += skip;
        collect_tail(&bytes, &mut i, base, &mut found);
    }
    found
}

/// Reads `a::b::{c, d::e}` at `bytes[*i..]`, pushing one full path per leaf.
fn collect_tail(bytes: &[char], i: &mut usize, mut base: Vec<String>, found: &mut Vec<Vec<String>>) {
    loop {
        if *i < bytes.len() && bytes[*i] == '{' {
            *i += 1;
            loop {
                while *i < bytes.len() && (bytes[*i].is_whitespace() || bytes[*i] == ',') {
                    *i += 1;
                }
                if *i >= bytes.len() || bytes[*i] == '}' {
                    *i += 1;
                    return;
                }
                let before = *i;
                collect_tail(bytes, i, base.clone(), found);
                // Skip anything the leaf reader did not consume (`as` renames, `self`).
                while *i < bytes.len() && bytes[*i] != ',' && bytes[*i] != '}' {
                    *i += 1;
                }
                if *i == before {
                    *i += 1;
                }
            }
        }
        let start = *i;
        while *i < bytes.len() && is_ident(bytes[*i]) {
            *i += 1;
        }
        if *i == start {
            found.push(base);
            return;
        }
        base.push(bytes[start..*i].iter().collect());
        if bytes[*i..].iter().take(2).collect::<String>() == "::" {
            *i += 2;
        } else {
            found.push(base);
            return;
        }
    }
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn graphs() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, BTreeSet<String>>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut by_file: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        let code = production_source(&fs::read_to_string(f).expect("readable source"));
        let edges = by_file.entry(m.clone()).or_default();
        let prefix = if m.is_empty() { String::new() } else { format!("{m}::") };
        let children: Vec<String> = modules
            .iter()
            .filter_map(|c| c.strip_prefix(&prefix).filter(|rest| !rest.is_empty() && !rest.contains("::")))
            .map(str::to_owned)
            .collect();
        for path in referenced_paths(&m, &children, &code) {
            // The deepest known module the path names (the rest is an item inside it).
            let target = (0..=path.len()).rev().map(|n| path[..n].join("::")).find(|p| modules.contains(p));
            // The crate root only declares and re-exports: it is the facade, not a dependency.
            if let Some(t) = target
                && t != m
                && !t.is_empty()
                && !m.is_empty()
            {
                edges.insert(t);
            }
        }
    }
    let top = |m: &str| m.split("::").next().unwrap_or("").to_owned();
    let mut by_top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &by_file {
        let entry = by_top.entry(top(from)).or_default();
        for to in tos {
            if top(to) != top(from) {
                entry.insert(top(to));
            }
        }
    }
    (by_file, by_top)
}

#[test]
fn the_scanner_sees_paths_and_groups() {
    let found = referenced_paths(
        "a::b",
        &["kid".to_owned()],
        "use crate::{x::Y, z::{w, v::U as T}};\nuse super::c::D;\nlet q = crate::k::f();\npub use kid::K;\nmykid::n();",
    );
    let flat: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(flat, ["x::Y", "z::w", "z::v::U", "a::c::D", "k::f", "a::b::kid::K"]);
    let g = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycles(&g), vec![vec!["a".to_owned(), "b".to_owned()]]);
}

#[test]
fn no_import_cycles_between_modules() {
    let (by_file, by_top) = graphs();
    println!("top-level modules (module -> modules it uses):");
    for (m, tos) in &by_top {
        println!("  {m} -> {}", tos.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    println!("files:");
    for (m, tos) in &by_file {
        println!(
            "  {} -> {}",
            if m.is_empty() { "crate" } else { m },
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let top_cycles = cycles(&by_top);
    let file_cycles = cycles(&by_file);
    for c in &top_cycles {
        println!("top-level cycle: {}", c.join(" <-> "));
    }
    for c in &file_cycles {
        println!("file-level cycle: {}", c.join(" <-> "));
    }
    assert!(top_cycles.is_empty(), "import cycles between top-level modules: {top_cycles:?}");
    let known: Vec<Vec<String>> =
        KNOWN_FILE_CYCLES.iter().map(|c| c.iter().map(|m| (*m).to_owned()).collect()).collect();
    assert_eq!(file_cycles, known, "import cycles between files differ from the known ones");
}
