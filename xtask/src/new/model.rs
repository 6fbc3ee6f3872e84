//! `cargo xtask new NAME --model FILE`: a service around an ONNX model a team already has.
//!
//! The trainer's `import_model.py` opens the model with ONNX Runtime (in the trainer's venv),
//! writes it as version 1 with a manifest of its real signature, and a parity fixture of
//! random inputs with Python onnxruntime's answers. From the manifest, this module writes the
//! Rust of the `model` template's placeholders: one request field per input tensor and one
//! answer field per output tensor, named like the tensors, each a list of rows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::template::Values;
use crate::venv;

/// The model's name in the new service's repository.
pub(super) const MODEL: &str = "model";

/// What the import wrote: the model repository and the parity fixture, in a scratch directory
/// removed when this is dropped.
pub(super) struct Imported {
    scratch: PathBuf,
}

impl Imported {
    /// The model repository (`models/`).
    pub(super) fn models(&self) -> PathBuf {
        self.scratch.join("models")
    }

    /// The parity fixture.
    pub(super) fn fixture(&self) -> PathBuf {
        self.scratch.join("parity.json")
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Imports `file` with the trainer's `import_model.py`.
pub(super) fn import(root: &Path, file: &Path) -> anyhow::Result<Imported> {
    anyhow::ensure!(file.is_file(), "{} is not a file", file.display());
    let file = file.canonicalize()?;
    let sh = Shell::new()?;
    let trainer = root.join("trainer");
    sh.change_dir(&trainer);
    let python = venv::reference(&sh, root)?;
    let imported = Imported {
        scratch: std::env::temp_dir().join(format!("oxiserve-import-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&imported.scratch);
    let (models, fixture) = (imported.models(), imported.fixture());
    cmd!(sh, "{python} import_model.py --model {file} --models {models} --name {MODEL}")
        .args(["--fixtures".as_ref(), fixture.as_os_str()])
        .run()
        .context("the model could not be imported (see above): nothing was written")?;
    Ok(imported)
}

/// The `model` template's values for the signature in `manifest` (a `manifest.json`).
pub(super) fn values(manifest: &Path, values: &mut Values) -> anyhow::Result<()> {
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(manifest)?)?;
    let inputs = specs(&manifest["inputs"], "input")?;
    let outputs = specs(&manifest["outputs"], "output")?;
    let mut idents = BTreeSet::new();
    for spec in inputs.iter().chain(&outputs) {
        if !idents.insert((spec.role, spec.ident())) {
            bail!("two {}s of the model are both named `{}` in Rust", spec.role, spec.ident());
        }
    }
    let lines = |specs: &[Spec], line: fn(&Spec) -> String| {
        specs.iter().map(line).collect::<Vec<_>>().join("\n")
    };
    values.insert("input_fields", lines(&inputs, Spec::field));
    values.insert("output_fields", lines(&outputs, Spec::field));
    let checks = [lines(&inputs, Spec::check), lines(&outputs, Spec::check)].join("\n");
    values.insert("checks", checks);
    values.insert("to_tensors", lines(&inputs, Spec::tensor_of_request));
    values.insert("from_tensors", lines(&outputs, Spec::answer_of_tensor));
    Ok(())
}

/// One tensor of the signature.
#[derive(Debug)]
struct Spec {
    /// `input` or `output`.
    role: &'static str,
    name: String,
    /// The Rust number type of its elements.
    element: &'static str,
    /// How many dimensions after the first (the rows).
    rank: usize,
}

/// The tensors in a manifest's `inputs` or `outputs` list.
fn specs(list: &Value, role: &'static str) -> anyhow::Result<Vec<Spec>> {
    let mut specs = Vec::new();
    for spec in list.as_array().with_context(|| format!("the manifest has no {role}s"))? {
        let name = spec["name"].as_str().with_context(|| format!("an {role} has no name"))?;
        let element = match spec["datatype"].as_str() {
            Some("FP32") => "f32",
            Some("INT64") => "i64",
            other => bail!("{role} `{name}` is {other:?}: --model supports FP32 and INT64"),
        };
        let rank = spec["shape"].as_array().map_or(0, Vec::len);
        anyhow::ensure!((1..=3).contains(&rank), "{role} `{name}` has {rank} dimensions");
        specs.push(Spec { role, name: name.to_string(), element, rank: rank - 1 });
    }
    Ok(specs)
}

impl Spec {
    /// Its name as a Rust field: lowercase, non-alphanumerics as `_`, never a keyword or a
    /// leading digit.
    fn ident(&self) -> String {
        let mut ident: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect();
        if ident.starts_with(|c: char| c.is_ascii_digit()) || ident.is_empty() {
            ident.insert_str(0, "t_");
        }
        if super::KEYWORDS.contains(&ident.as_str()) {
            ident.push('_');
        }
        ident
    }

    /// The Rust type of one row: the element in `rank` lists.
    fn row_type(&self) -> String {
        (0..self.rank).fold(self.element.to_string(), |inner, _| format!("Vec<{inner}>"))
    }

    /// Its field in `Input` or `Output`.
    fn field(&self) -> String {
        let ident = self.ident();
        let rename = if ident == self.name {
            String::new()
        } else {
            format!("    #[serde(rename = \"{}\")]\n", self.name)
        };
        format!(
            "    /// Tensor `{}`: one entry per row.\n{rename}    pub {ident}: Vec<{}>,",
            self.name,
            self.row_type()
        )
    }

    /// Its check, as a version loads, that the version's tensor fits the field.
    fn check(&self) -> String {
        let list = if self.role == "input" { "inputs" } else { "outputs" };
        format!("        rows::check::<{}>(&spec({list}, \"{}\")?)?;", self.row_type(), self.name)
    }

    /// Its tensor from the request, in `preprocess`.
    fn tensor_of_request(&self) -> String {
        let (name, ident) = (&self.name, self.ident());
        format!(
            "            (\"{name}\", rows::to_tensor(&input.{ident}, signature.input(\"{name}\")?)?),"
        )
    }

    /// Its answer field from the model's outputs, in `postprocess`.
    fn answer_of_tensor(&self) -> String {
        format!(
            "            {}: rows::from_tensor(outputs.tensor(\"{}\")?)?,",
            self.ident(),
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, element: &'static str, rank: usize) -> Spec {
        Spec { role: "input", name: name.into(), element, rank }
    }

    #[test]
    fn tensor_names_become_rust_fields_named_like_the_tensor_in_json() {
        assert_eq!(spec("input.1", "f32", 1).ident(), "input_1");
        assert_eq!(spec("0:Out", "f32", 1).ident(), "t_0_out");
        assert_eq!(spec("type", "f32", 1).ident(), "type_");
        let field = spec("input.1", "f32", 2).field();
        assert!(field.contains("#[serde(rename = \"input.1\")]"), "{field}");
        assert!(field.contains("pub input_1: Vec<Vec<Vec<f32>>>,"), "{field}");
        let field = spec("label", "i64", 0).field();
        assert!(!field.contains("rename") && field.contains("pub label: Vec<i64>,"), "{field}");
    }

    #[test]
    fn only_fp32_and_int64_tensors_of_one_to_three_dimensions_are_taken() {
        let list = |datatype: &str, shape: &[i64]| serde_json::json!([{"name": "x", "datatype": datatype, "shape": shape}]);
        assert_eq!(specs(&list("INT64", &[-1, 2, 3]), "input").unwrap()[0].rank, 2);
        let error = specs(&list("BOOL", &[-1]), "input").unwrap_err().to_string();
        assert!(error.contains("input `x`") && error.contains("BOOL"), "{error}");
        assert!(specs(&list("FP32", &[-1, 1, 2, 3]), "output").is_err());
    }
}
