//! `manifest.json`: what a model version is, written by the trainer beside its files.
//!
//! The manifest names every file with its sha256, declares the model's signature (input and
//! output names, datatypes and shapes, checked against the real session at load time), and
//! carries free-form metadata such as the preprocessing parameters a pipeline needs. It may
//! also carry golden examples: inputs with the outputs the trainer's runtime gave, which the
//! server runs at load and compares before it adopts the version.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::tensor::DataType;

/// The manifest format this build understands.
pub const FORMAT_VERSION: u32 = 1;

/// The file name of a manifest inside a version directory.
pub const FILE_NAME: &str = "manifest.json";

/// The most bytes a manifest may have: it lists files and a signature, never data.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The file name of the ONNX graph inside a version directory.
pub const MODEL_FILE: &str = "model.onnx";

/// A model version's manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Manifest {
    /// Manifest format, [`FORMAT_VERSION`] for this build.
    pub format_version: u32,
    /// Model name; equals the repository directory name.
    pub name: String,
    /// Version number; equals the version directory name.
    pub version: u64,
    /// When the trainer produced this version (RFC 3339).
    pub created_at: String,
    /// Every file of the version, by path relative to the version directory.
    pub files: BTreeMap<String, FileEntry>,
    /// The model's inputs.
    pub inputs: Vec<TensorSpec>,
    /// The model's outputs.
    pub outputs: Vec<TensorSpec>,
    /// Free-form data from training: preprocessing parameters, class names, metrics.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Inputs with the outputs the trainer's runtime gave: a version whose own outputs differ
    /// beyond the tolerance is refused at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden: Option<Golden>,
}

/// Golden examples of a version and how far its outputs may be from them.
///
/// A value passes when `|actual - expected| <= absolute + relative * |expected|`; text and
/// booleans must be equal, and so must every shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Golden {
    /// The absolute tolerance.
    #[serde(default = "Golden::default_absolute")]
    pub absolute: f64,
    /// The tolerance relative to the expected value.
    #[serde(default)]
    pub relative: f64,
    /// The examples, each one model run.
    pub examples: Vec<GoldenExample>,
}

impl Golden {
    /// The absolute tolerance when the manifest gives none: float rounding between runtimes
    /// and instruction sets, far below what a broken export changes.
    pub const DEFAULT_ABSOLUTE: f64 = 1e-4;

    fn default_absolute() -> f64 {
        Self::DEFAULT_ABSOLUTE
    }
}

/// One model run: its inputs, and the outputs it must give (all or some of the model's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct GoldenExample {
    /// Every input of the model, by name.
    pub inputs: BTreeMap<String, GoldenTensor>,
    /// Expected outputs, by name.
    pub outputs: BTreeMap<String, GoldenTensor>,
}

/// A tensor written out in a manifest, as KServe v2 JSON writes one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct GoldenTensor {
    /// Element type.
    pub datatype: DataType,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// The elements, flat or nested, in row-major order.
    #[schema(value_type = Vec<Object>)]
    pub data: serde_json::Value,
}

/// What a file of a version must be: checked before the file is used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FileEntry {
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl FileEntry {
    /// The entry describing `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self { sha256: sha256_hex(bytes), size: bytes.len() as u64 }
    }

    /// Whether `bytes` is the file this entry describes; the error says how it differs.
    pub fn check(&self, bytes: &[u8]) -> Result<(), String> {
        self.check_digest(bytes.len() as u64, &sha256_hex(bytes))
    }

    /// Whether a file of `size` bytes with lowercase hex digest `sha256` is this entry's.
    pub fn check_digest(&self, size: u64, sha256: &str) -> Result<(), String> {
        if size != self.size {
            return Err(format!(
                "size mismatch: manifest says {} bytes, file has {size}",
                self.size
            ));
        }
        if !sha256.eq_ignore_ascii_case(&self.sha256) {
            return Err(format!(
                "sha256 mismatch: manifest says {}, file has {sha256}",
                self.sha256
            ));
        }
        Ok(())
    }
}

/// Name, datatype and shape of one model input or output. `-1` marks a dynamic dimension.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions, `-1` where dynamic.
    pub shape: Vec<i64>,
}

impl Manifest {
    /// Reads `dir/manifest.json` and checks it against the directory it lives in.
    pub fn read(dir: &Path, model: &str, version: u64) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        Self::parse(&read_file(&path, MAX_MANIFEST_BYTES)?, &path, model, version)
    }

    /// Checks the format, that the manifest names `model` at `version`, and that every file
    /// stays inside the version directory.
    fn validate(self, path: &Path, model: &str, version: u64) -> Result<Self> {
        let manifest = self;
        let mismatch = |what: &str| Error::artifact(path, what);
        if manifest.format_version != FORMAT_VERSION {
            return Err(mismatch(&format!(
                "format_version {} is not supported (expected {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        if manifest.name != model || manifest.version != version {
            return Err(mismatch(&format!(
                "describes {} v{}, but sits in the directory of {model} v{version}",
                manifest.name, manifest.version
            )));
        }
        if !manifest.files.contains_key(MODEL_FILE) {
            return Err(mismatch(&format!("lists no `{MODEL_FILE}`")));
        }
        if let Some(escape) = manifest.files.keys().find(|file| !is_inside_version(file)) {
            return Err(mismatch(&format!(
                "names `{escape}`, a path outside its version directory"
            )));
        }
        if let Some((file, inside)) = file_inside_file(&manifest.files) {
            return Err(mismatch(&format!(
                "names both `{file}` and `{inside}`: a file cannot be a directory too"
            )));
        }
        Ok(manifest)
    }

    /// Parses a manifest from bytes and checks it names `model` at `version`; `origin` names
    /// where the bytes came from in errors.
    pub fn parse(bytes: &[u8], origin: &Path, model: &str, version: u64) -> Result<Self> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| Error::artifact(origin, e))?;
        manifest.validate(origin, model, version)
    }

    /// Reads one file listed in the manifest, failing unless its size and sha256 match.
    pub fn read_verified(&self, dir: &Path, file: &str) -> Result<Vec<u8>> {
        let path = dir.join(file);
        let entry = self
            .files
            .get(file)
            .ok_or_else(|| Error::artifact(&path, "is not listed in the manifest"))?;
        let bytes = read_file(&path, entry.size)?;
        entry.check(&bytes).map_err(|detail| Error::artifact(&path, detail))?;
        Ok(bytes)
    }

    /// The model's label in logs and errors: `name:version`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
}

/// Reads the regular file at `path` of at most `limit` bytes. Both are checked before a byte
/// is read: a FIFO or a device is refused at once (a link to `/dev/zero` once took 3 GB in
/// 5 s, a FIFO hung the reader for good), and so is a file larger than the limit; a file that
/// grows while it is read is cut at the limit and refused.
pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let too_large = |size: u64| {
        Error::artifact(path, format!("size mismatch: has {size} bytes, at most {limit} expected"))
    };
    let metadata = std::fs::metadata(path).map_err(|e| Error::artifact(path, e))?;
    if !metadata.is_file() {
        return Err(Error::artifact(path, "is not a regular file"));
    }
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::artifact(path, e))?;
    let capacity = usize::try_from(metadata.len()).map_err(|_| too_large(metadata.len()))?;
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::artifact(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Whether `file` is a plain relative path that stays inside the version directory.
fn is_inside_version(file: &str) -> bool {
    !file.is_empty()
        && !file.contains('\\')
        && Path::new(file).components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// A file listed as a directory of another (`x` and `x/y`), which no directory can hold.
fn file_inside_file(files: &BTreeMap<String, FileEntry>) -> Option<(&str, &str)> {
    files.keys().find_map(|inside| {
        let ancestors = inside.match_indices('/').map(|(end, _)| &inside[..end]);
        ancestors.into_iter().find(|dir| files.contains_key(*dir)).map(|dir| (dir, inside.as_str()))
    })
}

/// Lowercase hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_version(root: &Path, model_bytes: &[u8], listed: FileEntry) -> std::path::PathBuf {
        let dir = root.join("m").join("3");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MODEL_FILE), model_bytes).unwrap();
        let manifest = serde_json::json!({
            "format_version": 1, "name": "m", "version": 3, "created_at": "2026-01-01T00:00:00Z",
            "files": {"model.onnx": listed},
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}],
        });
        std::fs::write(dir.join(FILE_NAME), manifest.to_string()).unwrap();
        dir
    }

    #[test]
    fn a_matching_checksum_reads_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_version(tmp.path(), b"graph", FileEntry::of(b"graph"));
        let manifest = Manifest::read(&dir, "m", 3).unwrap();
        assert_eq!(manifest.inputs[0].datatype, DataType::Fp32);
        assert_eq!(manifest.read_verified(&dir, MODEL_FILE).unwrap(), b"graph");
    }

    #[test]
    fn a_corrupted_file_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_version(tmp.path(), b"graph!", FileEntry::of(b"graph"));
        let manifest = Manifest::read(&dir, "m", 3).unwrap();
        let error = manifest.read_verified(&dir, MODEL_FILE).unwrap_err().to_string();
        assert!(error.contains("model.onnx") && error.contains("size mismatch"), "{error}");
        let same_size = write_version(tmp.path(), b"graph", FileEntry::of(b"grapH"));
        let manifest = Manifest::read(&same_size, "m", 3).unwrap();
        let error = manifest.read_verified(&same_size, MODEL_FILE).unwrap_err().to_string();
        assert!(error.contains("model.onnx") && error.contains("sha256 mismatch"), "{error}");
    }

    #[test]
    fn a_manifest_in_the_wrong_directory_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_version(tmp.path(), b"graph", FileEntry::of(b"graph"));
        let error = Manifest::read(&dir, "m", 4).unwrap_err().to_string();
        assert!(error.contains("m v3") && error.contains("manifest.json"), "{error}");
    }

    #[test]
    fn files_outside_the_version_directory_are_rejected() {
        for escape in ["../other/model.onnx", "/etc/passwd", "a/../../b", "", "a\\..\\b"] {
            assert!(!is_inside_version(escape), "{escape}");
        }
        for inside in ["model.onnx", "tokenizer/vocab.txt"] {
            assert!(is_inside_version(inside), "{inside}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_version(tmp.path(), b"graph", FileEntry::of(b"graph"));
        let path = dir.join(FILE_NAME);
        let mut manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        manifest["files"]["../../escape"] = serde_json::to_value(FileEntry::of(b"x")).unwrap();
        std::fs::write(&path, manifest.to_string()).unwrap();
        let error = Manifest::read(&dir, "m", 3).unwrap_err().to_string();
        assert!(error.contains("outside its version directory"), "{error}");
    }

    #[test]
    fn only_regular_files_within_their_size_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_file(&file, 5).unwrap(), b"12345");
        let error = read_file(&file, 4).unwrap_err().to_string();
        assert!(error.contains("size mismatch") && error.contains("5 bytes"), "{error}");
        // A device that never ends: refused before a byte is read.
        let error = read_file(Path::new("/dev/zero"), 1 << 30).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
        let error = read_file(tmp.path(), 1 << 30).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }

    #[test]
    fn a_file_listed_as_the_directory_of_another_is_rejected() {
        let entry = FileEntry::of(b"x");
        let files = |names: &[&str]| -> BTreeMap<String, FileEntry> {
            names.iter().map(|n| (n.to_string(), entry.clone())).collect()
        };
        let clash = files(&["model.onnx", "vocab", "vocab-extra", "vocab/words.txt"]);
        assert_eq!(file_inside_file(&clash), Some(("vocab", "vocab/words.txt")));
        let deep = files(&["a/b", "a/b/c/d"]);
        assert_eq!(file_inside_file(&deep), Some(("a/b", "a/b/c/d")));
        assert_eq!(file_inside_file(&files(&["a/b", "a/c", "ab"])), None);
    }

    mod hostile {
        use proptest::prelude::*;

        use super::*;
        use crate::hostile;

        /// A manifest of `m` v3 whose fields may be anything, and whose file names are
        /// paths of the kinds that escape or clash.
        fn manifest() -> impl Strategy<Value = serde_json::Value> {
            let name = prop_oneof![
                Just("model.onnx".to_string()),
                Just("x".to_string()),
                Just("x/y".to_string()),
                Just("../x".to_string()),
                Just("/etc/passwd".to_string()),
                "[a-z./\\\\]{0,8}",
            ];
            let sha = prop_oneof![3 => "[0-9a-f]{0,64}".prop_map(serde_json::Value::from), 1 => hostile::json()];
            let entry = (sha, any::<u64>())
                .prop_map(|(sha, size)| serde_json::json!({"sha256": sha, "size": size}));
            let files = prop::collection::btree_map(name, entry, 0..5);
            let inputs = prop_oneof![3 => Just(serde_json::json!([])), 1 => hostile::json()];
            (files, inputs, hostile::json(), prop_oneof![3 => Just(1u32), 1 => any::<u32>()])
                .prop_map(|(files, inputs, metadata, format)| {
                    serde_json::json!({
                        "format_version": format, "name": "m", "version": 3,
                        "created_at": "2026-01-01T00:00:00Z", "files": files,
                        "inputs": inputs, "outputs": [], "metadata": metadata,
                    })
                })
        }

        proptest! {
            #[test]
            fn manifests_parse_only_when_every_file_fits_in_its_directory(
                manifest in manifest(),
                bytes in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                let origin = Path::new("m/3/manifest.json");
                let _ = Manifest::parse(&bytes, origin, "m", 3);
                let parsed = Manifest::parse(manifest.to_string().as_bytes(), origin, "m", 3);
                if let Ok(parsed) = parsed {
                    prop_assert!(parsed.files.contains_key(MODEL_FILE));
                    prop_assert!(parsed.files.keys().all(|file| is_inside_version(file)));
                    prop_assert!(file_inside_file(&parsed.files).is_none());
                }
            }
        }
    }
}
