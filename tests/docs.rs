//! Every Rust snippet a reader meets runs: the README's are doctests (see
//! `ReadmeDoctests` in src/lib.rs) and so are the crate docs'. This test
//! keeps anyone from quietly opting a snippet out of running again.

use std::fs;
use std::path::{Path, PathBuf};

/// Code-block attributes that stop rustdoc from running a snippet.
const OPT_OUTS: [&str; 3] = ["no_run", "ignore", "compile_fail"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source tree") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The attributes of each fenced block opening in `text` (doc-comment
/// prefixes already stripped), with its line number.
fn fences(text: &str) -> Vec<(usize, String)> {
    let mut open = false;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        if !open {
            found.push((n + 1, rest.trim().to_string()));
        }
        open = !open;
    }
    found
}

fn doc_text(source: &str) -> String {
    source
        .lines()
        .map(|line| {
            let t = line.trim_start();
            t.strip_prefix("//!")
                .or_else(|| t.strip_prefix("///"))
                .unwrap_or("")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn opted_out(attrs: &str) -> bool {
    attrs.split(',').any(|a| OPT_OUTS.contains(&a.trim()))
}

#[test]
fn readme_rust_snippets_all_run() {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let blocks = fences(&readme);
    let rust: Vec<_> = blocks
        .iter()
        .filter(|(_, a)| a.split(',').next() == Some("rust"))
        .collect();
    assert!(
        rust.len() >= 2,
        "the README's API tour and ServiceDiscovery snippets"
    );
    for (line, attrs) in &blocks {
        assert!(
            !opted_out(attrs),
            "README.md:{line}: ```{attrs} does not run"
        );
    }
}

#[test]
fn crate_doc_snippets_all_run() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10);
    let mut offenders = Vec::new();
    for file in files {
        let source = fs::read_to_string(&file).expect("source file");
        for (line, attrs) in fences(&doc_text(&source)) {
            if opted_out(&attrs) {
                offenders.push(format!("{}:{line}: ```{attrs}", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "doc snippets that do not run: {offenders:#?}"
    );
}
