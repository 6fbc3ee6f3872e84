//! Templates: real files in which `{{key}}` stands for a value (a new service's name, crate
//! name, pipeline type), as in the service templates under `templates/<kind>/` and the
//! service configuration of `deploy/k8s/base/config.toml`. Text files (Rust, TOML, Markdown)
//! are rendered; every other file (models, fixtures) is copied as it is.
//!
//! `{{` always opens a placeholder in a rendered file, so templates never use it otherwise; a
//! placeholder without a value, or one left open, is an error that names its file and line,
//! so a template cannot ship with a hole in it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

/// Extensions of the files that are rendered; the others are copied byte for byte.
const RENDERED: [&str; 3] = ["rs", "toml", "md"];

/// The values a template's placeholders stand for.
pub(crate) type Values = BTreeMap<&'static str, String>;

/// Writes the template at `template` into `out` (which must exist), rendering its text files
/// with `values`; a template drawn over another adds files to its directories.
pub(crate) fn render_dir(template: &Path, out: &Path, values: &Values) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(template).with_context(|| template.display().to_string())? {
        let entry = entry?;
        let (from, to) = (entry.path(), out.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&to)?;
            render_dir(&from, &to, values)?;
        } else if from.extension().is_some_and(|ext| RENDERED.iter().any(|r| ext == *r)) {
            let text = std::fs::read_to_string(&from)?;
            let rendered = render(&text, values).with_context(|| from.display().to_string())?;
            std::fs::write(&to, rendered)?;
        } else {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Copies the directory `from` to `to` (which must not exist) as it is.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// `text` with every `{{key}}` replaced by its value.
pub(crate) fn render(text: &str, values: &Values) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let line = text[..text.len() - rest.len() + open].matches('\n').count() + 1;
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            bail!("line {line}: a placeholder opened with {{{{ is never closed");
        };
        let key = after[..close].trim();
        let Some(value) = values.get(key) else {
            bail!("line {line}: no value for the placeholder {{{{{key}}}}}");
        };
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values::from([("name", "fraud-score".to_string()), ("crate", "fraud_score".to_string())])
    }

    #[test]
    fn placeholders_are_replaced_and_the_rest_kept() {
        let text = "name = \"{{name}}\"\nuse {{ crate }}::X; // {single} braces stay\n";
        let rendered = render(text, &values()).unwrap();
        assert_eq!(
            rendered,
            "name = \"fraud-score\"\nuse fraud_score::X; // {single} braces stay\n"
        );
    }

    #[test]
    fn unknown_and_unclosed_placeholders_name_their_line() {
        let error = render("a\nb {{nmae}}\n", &values()).unwrap_err().to_string();
        assert!(error.contains("line 2") && error.contains("{{nmae}}"), "{error}");
        let error = render("{{name}}\n\n{{crate", &values()).unwrap_err().to_string();
        assert!(error.contains("line 3") && error.contains("never closed"), "{error}");
    }

    #[test]
    fn text_files_are_rendered_and_others_copied() {
        let (template, out) = (tempdir("template"), tempdir("out"));
        std::fs::create_dir(template.join("src")).unwrap();
        std::fs::write(template.join("src/lib.rs"), "//! {{name}}\n").unwrap();
        std::fs::write(template.join("model.onnx"), b"{{name}}\x00").unwrap();
        render_dir(&template, &out, &values()).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("src/lib.rs")).unwrap(), "//! fraud-score\n");
        assert_eq!(std::fs::read(out.join("model.onnx")).unwrap(), b"{{name}}\x00");
        for dir in [template, out] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// A new empty directory under the system's temporary directory.
    fn tempdir(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
