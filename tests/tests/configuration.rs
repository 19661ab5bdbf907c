//! Configuration from one place: the functions' variables (`shared::config::vars::VARS`, the
//! thumbnail function's `Config::variables`) held against template.yaml, whose parameters set
//! them on AWS; and docs/configuration.md, whose tables are generated from both.
//!
//! After changing a default, a range or a description, regenerate the tables with
//! `UPDATE_CONFIG_DOCS=1 cargo test -p chat-tests --test configuration`.

use serde_yaml::Value;
use shared::config::vars::{Kind, VARS};
use std::collections::BTreeMap;

const TEMPLATE: &str = include_str!("../../template.yaml");
const DOCS: &str = "../docs/configuration.md";
const BEGIN: &str = "<!-- BEGIN GENERATED: tests/tests/configuration.rs -->";
const END: &str = "<!-- END GENERATED -->";

/// The thumbnail function reads only its own variables, though it inherits the Globals.
const THUMBNAIL: &str = "ThumbnailFunction";

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("the template is YAML")
}

/// A scalar as text (`10485760`, `+08:00`, `true`).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The parameter a value names with `!Ref`, if it is one (and not a resource or a pseudo
/// parameter).
fn parameter_ref<'a>(v: &'a Value, parameters: &Value) -> Option<&'a str> {
    let Value::Tagged(t) = v else { return None };
    let name = t.value.as_str().filter(|_| t.tag == "!Ref")?;
    parameters.get(name).is_some().then_some(name)
}

/// (function, variable, parameter) for every variable a function gets from a template
/// parameter, the Globals' included.
fn bindings(template: &Value) -> Vec<(String, String, String)> {
    let parameters = &template["Parameters"];
    let variables = |node: &Value| -> Vec<(String, String)> {
        let Some(vars) = node["Environment"]["Variables"].as_mapping() else {
            return Vec::new();
        };
        vars.iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), parameter_ref(v, parameters)?)))
            .map(|(k, p)| (k, p.to_owned()))
            .collect()
    };
    let globals = variables(&template["Globals"]["Function"]);
    let mut out = Vec::new();
    for (id, resource) in template["Resources"].as_mapping().into_iter().flatten() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().unwrap_or_default();
        let own = variables(&resource["Properties"]);
        for (var, param) in globals.iter().chain(&own) {
            out.push((id.to_owned(), var.clone(), param.clone()));
        }
    }
    out
}

/// The default the code gives `var` in `function`; `None` when that function does not read it.
fn code_default(function: &str, var: &str) -> Option<String> {
    if function == THUMBNAIL {
        let vars = thumbnail::Config::variables();
        return vars.into_iter().find(|v| v.0 == var).map(|v| v.1);
    }
    VARS.iter()
        .find(|v| v.name == var)
        .and_then(|v| v.kind.default_text())
}

/// Every way `template` and the code disagree on configuration, one line each.
fn mismatches(template: &str) -> Vec<String> {
    let template = yaml(template);
    let parameters = &template["Parameters"];
    let bound = bindings(&template);
    let mut out = Vec::new();
    for (function, var, param) in &bound {
        let in_template = text(&parameters[param.as_str()]["Default"]);
        let Some(in_code) = code_default(function, var) else {
            if function != THUMBNAIL {
                out.push(format!(
                    "{function}: {var} (from {param}) is not in config::vars"
                ));
            }
            continue;
        };
        if in_template.as_deref() != Some(in_code.as_str()) {
            out.push(format!(
                "{function}: {var} defaults to {in_code} in the code but parameter {param} to {}",
                in_template.unwrap_or_else(|| "nothing".into())
            ));
        }
        let row = VARS.iter().find(|v| v.name == var);
        if let Some(row) = row.filter(|r| r.parameter != Some(param.as_str())) {
            out.push(format!(
                "{var} is set from parameter {param}, but config::vars names {:?}",
                row.parameter
            ));
        }
    }
    for row in VARS {
        if let Some(p) = row.parameter {
            if !bound.iter().any(|(_, v, q)| v == row.name && q == p) {
                out.push(format!(
                    "{} names parameter {p}, which sets it in no function",
                    row.name
                ));
            }
        }
    }
    out
}

#[test]
fn the_templates_parameter_defaults_are_the_codes_defaults() {
    // GIVEN the project's template and the functions' configuration tables
    // WHEN every variable set from a parameter is compared
    let found = mismatches(TEMPLATE);
    // THEN their defaults agree, and each row names the parameter that sets it
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert!(
        bindings(&yaml(TEMPLATE)).len() > 20,
        "the template's variables were read"
    );
}

#[test]
fn a_default_changed_in_one_place_only_is_caught() {
    // GIVEN the template with MaxSendsPerMinute's default changed, and nothing else
    let changed = TEMPLATE.replacen(
        "  MaxSendsPerMinute:\n    Type: Number\n    Default: 60\n",
        "  MaxSendsPerMinute:\n    Type: Number\n    Default: 61\n",
        1,
    );
    assert_ne!(
        changed, TEMPLATE,
        "the template still declares the parameter"
    );
    // WHEN it is held against the code
    let found = mismatches(&changed);
    // THEN the mismatch is reported, naming variable, parameter and both defaults
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("MAX_SENDS_PER_MINUTE")
            && found[0].contains("MaxSendsPerMinute")
            && found[0].contains("60")
            && found[0].contains("61"),
        "{}",
        found[0]
    );
    // AND the thumbnail function's own default is held against it too
    let changed = TEMPLATE.replacen("    Default: 40000000\n", "    Default: 30000000\n", 1);
    let found = mismatches(&changed);
    assert!(
        found.iter().any(|m| m.contains("THUMBNAIL_MAX_PIXELS")),
        "{found:?}"
    );
}

/// A table cell: pipes escaped, newlines folded.
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// What a parameter accepts, from its constraints.
fn accepts(p: &Value) -> String {
    let bounds = (text(&p["MinValue"]), text(&p["MaxValue"]));
    if let (Some(lo), Some(hi)) = bounds {
        return format!("{lo} – {hi}");
    }
    if let Some(values) = p["AllowedValues"].as_sequence() {
        let values: Vec<String> = values.iter().filter_map(text).collect();
        return values.join(", ");
    }
    match text(&p["AllowedPattern"]) {
        Some(pattern) => format!("`{pattern}`"),
        None => String::new(),
    }
}

/// The generated part of docs/configuration.md.
fn generated() -> String {
    let template = yaml(TEMPLATE);
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, var, param) in bindings(&template) {
        let vars = sets.entry(param).or_default();
        if !vars.contains(&var) {
            vars.push(var);
        }
    }
    let mut out = String::from("### Template parameters\n\n");
    out += "Set with `sam deploy --parameter-overrides Name=value`.\n\n";
    out += "| parameter | default | accepts | sets | meaning |\n|---|---|---|---|---|\n";
    for (name, p) in template["Parameters"].as_mapping().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        let default = match text(&p["Default"]).unwrap_or_default() {
            d if d.is_empty() => "(empty)".to_owned(),
            d => format!("`{}`", cell(&d)),
        };
        let vars = sets.get(name).map(|v| {
            v.iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        out += &format!(
            "| `{name}` | {default} | {} | {} | {} |\n",
            cell(&accepts(p)),
            vars.unwrap_or_default(),
            cell(p["Description"].as_str().unwrap_or_default())
        );
    }
    out += "\n### Function environment variables\n\n";
    out += "`$connect`, `$default` and `$disconnect` (`shared::config::vars`); a missing or malformed value stops the function at cold start, naming the variable.\n\n";
    out += "| variable | default | accepts | parameter | read by | meaning |\n|---|---|---|---|---|---|\n";
    for v in VARS {
        let (default, accepts) = match v.kind {
            Kind::Required => ("(required)".to_owned(), String::new()),
            Kind::Optional => ("(unset)".to_owned(), String::new()),
            Kind::Number { default, min, max } => {
                (format!("`{default}`"), format!("{min} – {max}"))
            }
            Kind::Text { default } => (format!("`{default}`"), String::new()),
            Kind::Flag { default } => (format!("`{default}`"), "true, false".to_owned()),
        };
        let parameter = v.parameter.map(|p| format!("`{p}`")).unwrap_or_default();
        out += &format!(
            "| `{}` | {default} | {accepts} | {parameter} | {} | {} |\n",
            v.name,
            cell(v.read_by),
            cell(v.doc)
        );
    }
    out += "\nThe thumbnail function (`functions/thumbnail`):\n\n";
    out += "| variable | default | meaning |\n|---|---|---|\n";
    for (name, default, doc) in thumbnail::Config::variables() {
        out += &format!("| `{name}` | `{default}` | {} |\n", cell(doc));
    }
    out
}

#[test]
fn the_configuration_doc_holds_the_generated_tables() {
    // GIVEN docs/configuration.md and the tables generated from the template and the code
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCS);
    let doc = std::fs::read_to_string(&path).expect("docs/configuration.md exists");
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/configuration.md lacks the markers {BEGIN} … {END}");
    };
    let fresh = format!(
        "{}{BEGIN}\n\n{}\n{}",
        &doc[..begin],
        generated(),
        &doc[end..]
    );
    if std::env::var_os("UPDATE_CONFIG_DOCS").is_some() && fresh != doc {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    // THEN the doc's tables are exactly those
    assert!(
        fresh == doc,
        "docs/configuration.md is out of date: run UPDATE_CONFIG_DOCS=1 cargo test -p chat-tests --test configuration"
    );
}
