//! The layering of docs/design.md's "Code layout", checked: a module names only modules
//! of its own layer or below (through `crate::` paths, the crate root's re-exports
//! resolved to the module they come from). Comments are not code and are skipped, so
//! doc links may point anywhere.

use std::collections::HashMap;
use std::path::Path;

/// Each top-level module's layer, from the bottom (docs/design.md).
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("time", 0),
    ("id", 0),
    ("config", 0),
    ("tls", 0),
    ("events", 0),
    ("cookie", 0),
    ("future", 0),
    ("metrics", 0),
    ("details", 0),
    ("store", 1),
    ("context", 2),
    ("session", 3),
    ("admin", 3),
    ("tokens", 3),
    ("layer", 4),
    ("service", 4),
    ("csrf", 4),
    ("axum_login", 4),
    ("messages", 4),
    ("testing", 5),
    ("lib", 5),
];

/// The first identifier of every path in a `{…}` use group starting at `s[0] == '{'`.
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let (mut depth, mut expect) = (0usize, false);
    let mut i = 0;
    while i < s.len() {
        let c = s.as_bytes()[i];
        match c {
            b'{' => {
                depth += 1;
                expect = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect = true,
            c if expect && depth == 1 && (c.is_ascii_alphanumeric() || c == b'_') => {
                let word = ident(&s[i..]);
                heads.push(word);
                i += word.len();
                expect = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The modules `code` names through `crate::`.
fn named_modules(code: &str, root: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let heads = if rest.starts_with('{') {
            group_heads(rest)
        } else {
            vec![ident(rest)]
        };
        for head in heads {
            out.push(root.get(head).cloned().unwrap_or_else(|| head.to_owned()));
        }
    }
    out
}

fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate root's `pub use module::{Name, …}`: each re-exported name to its module.
fn root_exports(lib: &str) -> HashMap<String, String> {
    let mut root = HashMap::new();
    for line in without_comments(lib).split(';') {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        if module == "crate" {
            continue;
        }
        let names = names.trim_start_matches('{');
        for name in names.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !name.is_empty() {
                root.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    root
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The arrows from a module to a higher layer: `(file, module it names)`.
fn upward_arrows(src: &Path) -> Vec<(String, String)> {
    let layer: HashMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut root = root_exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // An exported macro is named at the crate root but belongs to the module that
    // defines it.
    for file in &files {
        let rel = file
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        let code = std::fs::read_to_string(file).unwrap();
        for (at, _) in code.match_indices("macro_rules! ") {
            let name = ident(&code[at + "macro_rules! ".len()..]);
            root.insert(name.to_owned(), top.clone());
        }
    }
    let mut arrows = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
        if top == "layering" {
            continue; // this file: its paths are test data
        }
        let own = *layer
            .get(top)
            .unwrap_or_else(|| panic!("{rel}: module `{top}` has no layer in LAYERS"));
        let code = without_comments(&std::fs::read_to_string(&file).unwrap());
        for module in named_modules(&code, &root) {
            match layer.get(module.as_str()) {
                Some(&l) if l > own => arrows.push((rel.clone(), module)),
                Some(_) => {}
                None => panic!("{rel} names `crate::{module}`, which has no layer in LAYERS"),
            }
        }
    }
    arrows.sort();
    arrows.dedup();
    arrows
}

#[test]
fn modules_import_only_their_layer_and_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_eq!(upward_arrows(&src), Vec::<(String, String)>::new());
}

#[test]
fn the_check_sees_an_upward_arrow() {
    let root = root_exports("pub use layer::SessionLayer;\npub use store::{A, B};");
    let code = "use crate::{store::X, SessionLayer};\nfn f(_: &crate::context::S) {}";
    assert_eq!(named_modules(code, &root), ["store", "layer", "context"]);
    // Comments are skipped: a doc link is not an import.
    assert!(named_modules(&without_comments("/// [`crate::SessionLayer`]"), &root).is_empty());
}
