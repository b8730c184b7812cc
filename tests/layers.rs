//! The layers of `src/` import only downwards: `base` ← `oauth` ← `http` ← `serve`, and the
//! binaries sit on top. A file that reaches up (a store that knows HTTP, an error mapper that
//! knows the route table) fails here, naming the file, the line and the layer it reached.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Bottom to top.
const LAYERS: [&str; 4] = ["base", "oauth", "http", "serve"];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every layer `source` names through `crate::`, with the line it is named on: in `use crate::…`
/// paths, braced lists (`use crate::{base::…, http::{…}}`, on one line or several) and inline
/// paths alike. Comments are skipped.
fn layers_named(source: &str) -> Vec<(usize, &'static str)> {
    let code: Vec<&str> = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect();
    let code = code.join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut named = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let start = from + found + "crate::".len();
        from = start;
        let rest = &code[start..];
        if !rest.starts_with('{') {
            named.extend(layer_at(rest).map(|layer| (line_of(start), layer)));
            continue;
        }
        // The items of the braced list, at its top level only.
        let mut depth = 0;
        let mut item_start = start + 1;
        for (offset, c) in rest.char_indices() {
            let at = start + offset;
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    let item = &code[item_start..at];
                    let lead = item.len() - item.trim_start().len();
                    named.extend(layer_at(item.trim_start()).map(|layer| (line_of(item_start + lead), layer)));
                    item_start = at + 1;
                }
                _ => {}
            }
            match c {
                '}' if depth == 1 => break,
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    named
}

/// The layer a path starts with, if it starts with one.
fn layer_at(path: &str) -> Option<&'static str> {
    LAYERS.into_iter().find(|layer| {
        path.strip_prefix(layer).is_some_and(|after| {
            after.starts_with("::") || after.trim_start().is_empty() || after.starts_with([',', '}', ';'])
        })
    })
}

#[test]
fn no_layer_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    let mut files = 0;
    for (rank, layer) in LAYERS.iter().enumerate() {
        for file in rust_files(&src.join(layer)) {
            files += 1;
            let text = fs::read_to_string(&file).unwrap();
            for (number, named) in layers_named(&text) {
                let named_rank = LAYERS.iter().position(|l| *l == named).unwrap();
                if named_rank > rank {
                    upward.push(format!(
                        "{}:{number}: {layer} imports from {named}: {}",
                        file.strip_prefix(&src).unwrap().display(),
                        text.lines().nth(number - 1).unwrap_or_default().trim()
                    ));
                }
            }
        }
    }
    assert!(
        files > 20,
        "only {files} files found under src/: is the layout still {LAYERS:?}?"
    );
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_library_is_the_four_layers_and_nothing_else() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found: Vec<String> = fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "lib.rs" && name != "bin")
        .collect();
    found.sort();
    let mut expected: Vec<String> = LAYERS.iter().map(|l| (*l).to_owned()).collect();
    expected.sort();
    assert_eq!(found, expected, "src/ holds something outside the layers");
}

#[test]
fn every_binary_is_a_few_lines_over_the_serve_layer() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    for file in rust_files(&bin) {
        let text = fs::read_to_string(&file).unwrap();
        let lines = text.lines().count();
        assert!(
            lines <= 30,
            "{} has {lines} lines; start-up logic belongs in src/serve/",
            file.display()
        );
    }
}

#[test]
fn the_check_sees_every_form_of_import() {
    let names = |source: &str| {
        layers_named(source)
            .into_iter()
            .map(|(_, layer)| layer)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("use crate::http::error::BrokerError;"), ["http"]);
    assert_eq!(
        names("use crate::{base::store::Store, oauth::app::App};"),
        ["base", "oauth"]
    );
    assert_eq!(
        layers_named("use crate::{\n    base::{\n        http_like::X,\n    },\n    serve::lambda,\n};"),
        [(2, "base"), (5, "serve")]
    );
    assert_eq!(names("    x(crate::serve::lambda::run);"), ["serve"]);
    assert_eq!(names("use crate::{http::{self, error}, oauth};"), ["http", "oauth"]);
    assert!(names("    // crate::serve is only mentioned").is_empty());
    assert!(names("    basement::http_thing(); crate::baseline::x();").is_empty());
}
