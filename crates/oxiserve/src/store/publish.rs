//! Publishing a model version to a repository, local or S3, by the publication protocol:
//! every file first, `manifest.json` last, so readers never see a partial version.
//!
//! The source directory holds the version's files and a `manifest.json` written by the
//! trainer (inputs, outputs, metadata, created_at). Publishing fills in `name`, `version`,
//! `format_version` and the sha256 and size of every other file, then uploads.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;

use super::{Source, s3};
use crate::config::S3Config;
use crate::error::{Error, Result};
use crate::manifest::{self, FileEntry, Manifest};

/// What to publish and how.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Model name.
    pub model: String,
    /// Version number to publish as.
    pub version: u64,
    /// Directory holding the files and the trainer's `manifest.json`.
    pub from: PathBuf,
    /// Repository: a local directory or `s3://bucket/prefix`.
    pub to: String,
    /// Replace a version that is already published.
    pub force: bool,
    /// The S3 client settings, for an `s3://` repository.
    pub s3: S3Config,
}

/// Progress of an upload: after each file, its name, and bytes done out of the total.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

impl Publication {
    /// Publishes the version and returns the manifest written.
    pub async fn run(&self, progress: Progress<'_>) -> Result<Manifest> {
        let (manifest, files) = self.manifest()?;
        let manifest_json =
            serde_json::to_vec_pretty(&manifest).expect("a manifest serialises to JSON");
        let total: u64 = manifest.files.values().map(|f| f.size).sum();
        let mut done = 0;
        match Source::parse(&self.to)? {
            Source::Local(root) => {
                let dir = root.join(&self.model).join(self.version.to_string());
                self.refuse_overwrite(dir.join(manifest::FILE_NAME).is_file(), &dir)?;
                for (name, path) in &files {
                    let target = dir.join(name);
                    let parent =
                        target.parent().expect("a file inside the version directory has a parent");
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                    std::fs::copy(path, &target)
                        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
                    done += manifest.files[name].size;
                    progress(name, done, total);
                }
                let target = dir.join(manifest::FILE_NAME);
                let partial = dir.join(".manifest.json.partial");
                std::fs::write(&partial, &manifest_json)
                    .map_err(|e| Error::io(format!("writing {}", partial.display()), e))?;
                std::fs::rename(&partial, &target)
                    .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
            }
            Source::S3 { bucket, prefix } => {
                let client = s3::client(&self.s3).await;
                let base = s3::join_key(&prefix, &format!("{}/{}/", self.model, self.version));
                let manifest_key = format!("{base}{}", manifest::FILE_NAME);
                let url = PathBuf::from(format!("s3://{bucket}/{manifest_key}"));
                let unreachable =
                    |e: &dyn std::fmt::Display| Error::Remote(format!("s3://{bucket}: {e}"));
                let exists = client.head_object().bucket(&bucket).key(&manifest_key).send().await;
                let exists = match exists {
                    Ok(_) => true,
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => false,
                    Err(e) => return Err(unreachable(&aws_sdk_s3::error::DisplayErrorContext(e))),
                };
                self.refuse_overwrite(exists, &url)?;
                for (name, path) in &files {
                    let body = ByteStream::from_path(path).await.map_err(|e| unreachable(&e))?;
                    let key = format!("{base}{name}");
                    client
                        .put_object()
                        .bucket(&bucket)
                        .key(&key)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| unreachable(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
                    done += manifest.files[name].size;
                    progress(name, done, total);
                }
                client
                    .put_object()
                    .bucket(&bucket)
                    .key(&manifest_key)
                    .content_type("application/json")
                    .body(ByteStream::from(manifest_json))
                    .send()
                    .await
                    .map_err(|e| unreachable(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
            }
        }
        progress(manifest::FILE_NAME, total, total);
        Ok(manifest)
    }

    /// The manifest to publish, and every file to upload by its name in the version.
    fn manifest(&self) -> Result<(Manifest, Vec<(String, PathBuf)>)> {
        let template_path = self.from.join(manifest::FILE_NAME);
        let template =
            std::fs::read(&template_path).map_err(|e| Error::artifact(&template_path, e))?;
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&template).map_err(|e| Error::artifact(&template_path, e))?;
        let mut files = Vec::new();
        collect_files(&self.from, &self.from, &mut files)?;
        let mut entries = serde_json::Map::new();
        for (name, path) in &files {
            let bytes = std::fs::read(path).map_err(|e| Error::artifact(path, e))?;
            entries.insert(
                name.clone(),
                serde_json::to_value(FileEntry::of(&bytes)).expect("a file entry serialises"),
            );
        }
        manifest["format_version"] = manifest::FORMAT_VERSION.into();
        manifest["name"] = self.model.clone().into();
        manifest["version"] = self.version.into();
        manifest["files"] = entries.into();
        let bytes = serde_json::to_vec(&manifest).expect("a JSON value serialises");
        let manifest = Manifest::parse(&bytes, &template_path, &self.model, self.version)?;
        Ok((manifest, files))
    }

    fn refuse_overwrite(&self, exists: bool, at: &Path) -> Result<()> {
        if exists && !self.force {
            return Err(Error::artifact(at, "is already published; pass --force to replace it"));
        }
        Ok(())
    }
}

/// Every file under `dir` except the manifest, named relative to `root` with `/`.
fn collect_files(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::artifact(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::artifact(dir, e))?.path();
        if path.is_dir() {
            collect_files(root, &path, files)?;
            continue;
        }
        let relative = path.strip_prefix(root).expect("walked paths are under the root");
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if name != manifest::FILE_NAME {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(())
}
