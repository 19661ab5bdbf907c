//! `template.yaml`, read and parsed once. [`crate::app`] reads what the stack runs from it.

use crate::resolve::err;
use crate::DevError;
use serde_yaml::Value;
use std::path::Path;
use std::sync::OnceLock;

/// A parsed template. Everything the local tools read from `template.yaml` comes from one of
/// these, so the file is read and parsed in one place.
#[derive(Debug, Clone)]
pub struct Template {
    doc: Value,
}

impl Template {
    /// Parses template text.
    pub fn parse(yaml: &str) -> Result<Self, DevError> {
        let doc: Value = serde_yaml::from_str(yaml).map_err(|e| err(e.to_string()))?;
        if !doc.is_mapping() {
            return Err(err("not a mapping"));
        }
        Ok(Template { doc })
    }

    pub fn from_file(path: &Path) -> Result<Self, DevError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// The project's `template.yaml`, read and parsed once per process.
    pub fn project() -> Result<&'static Template, DevError> {
        static PROJECT: OnceLock<Result<Template, String>> = OnceLock::new();
        PROJECT
            .get_or_init(|| {
                Template::from_file(&crate::project_root().join("template.yaml"))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| DevError::Template(e.trim_start_matches("template.yaml: ").to_owned()))
    }

    /// The parsed document.
    pub fn doc(&self) -> &Value {
        &self.doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_must_be_a_mapping() {
        assert!(Template::parse("- a list").is_err());
        assert!(Template::parse("Resources: {}").is_ok());
    }
}
