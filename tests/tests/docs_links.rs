//! Every relative link in README.md and docs/ (and the READMEs beside the code) resolves: the
//! file exists and, for `#fragment`, so does the heading (GitHub's slugs).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Markdown files whose links are checked.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut out = vec![
        root.join("README.md"),
        root.join("infra/local-stack/README.md"),
        root.join("clients/miniprogram/README.md"),
        root.join("clients/web/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// The targets of `[text](target)` links outside code spans and fenced blocks.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code spans: `[x](y)` inside backticks is not a link.
        let text: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(
                after[..end]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            );
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation but `-` and `_` gone.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// What is wrong with one link of `doc`, if anything.
fn broken(doc: &Path, target: &str) -> Option<String> {
    if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, fragment) = match target.split_once('#') {
        Some((f, frag)) => (f, Some(frag)),
        None => (target, None),
    };
    let path = match file {
        "" => doc.to_owned(),
        f => doc.parent().unwrap().join(f),
    };
    if !path.exists() {
        return Some(format!("{}: {target}: no such file", doc.display()));
    }
    let fragment = fragment.filter(|f| !f.is_empty())?;
    if path.extension().is_some_and(|x| x == "md") {
        let text = std::fs::read_to_string(&path).unwrap();
        if !anchors(&text).iter().any(|a| a == fragment) {
            return Some(format!("{}: {target}: no such heading", doc.display()));
        }
    }
    None
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    // GIVEN the README, docs/ and the READMEs beside the code
    let mut checked = 0;
    let mut wrong = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        // WHEN each relative link is followed
        for target in links(&text) {
            checked += 1;
            wrong.extend(broken(&doc, &target));
        }
    }
    // THEN each names an existing file, and heading where it names one
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked > 30, "links were found ({checked})");
}

#[test]
fn a_broken_link_and_a_missing_heading_are_caught() {
    let readme = root().join("README.md");
    assert!(broken(&readme, "docs/protocol.md").is_none());
    assert!(broken(&readme, "docs/no-such-file.md").is_some());
    assert!(broken(&readme, "docs/architecture.md#map").is_none());
    assert!(broken(&readme, "docs/architecture.md#no-such-heading").is_some());
    assert_eq!(
        links("see [a](x.md) and `[b](y.md)` and [c](z.md#h)"),
        ["x.md", "z.md#h"]
    );
    assert_eq!(
        slug(" Why `$connect` verifies the token (no authorizer)"),
        "why-connect-verifies-the-token-no-authorizer"
    );
}
