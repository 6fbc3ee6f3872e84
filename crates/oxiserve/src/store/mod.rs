//! Model repositories: where model versions come from.
//!
//! Every version is loaded from a local directory laid out `<root>/<model>/<version>/`. With a
//! local `models.uri` that directory is the repository itself; with `s3://bucket/prefix` it is
//! `models.cache_dir`, into which [`S3Mirror`] copies published versions after checking every
//! file. The cache is what lets a service restart while S3 is unreachable. S3, and publishing
//! to it, need the `s3` feature.

mod local;
#[cfg(feature = "s3")]
mod publish;
#[cfg(feature = "s3")]
pub(crate) mod s3;

use std::path::PathBuf;

pub use self::local::LocalRepository;
#[cfg(feature = "s3")]
pub use self::publish::{Progress, Publication};
#[cfg(feature = "s3")]
pub use self::s3::{S3Mirror, client as s3_client};
use crate::error::{Error, Result};

/// What stands for [`S3Mirror`] in a build without the `s3` feature: a type with no value, so
/// the loader's code for a remote store is there but provably never runs.
#[cfg(not(feature = "s3"))]
#[derive(Debug, Clone)]
pub enum S3Mirror {}

#[cfg(not(feature = "s3"))]
impl S3Mirror {
    /// Never called: there is no mirror.
    pub async fn versions(&self, _: &str) -> Result<Vec<u64>> {
        match *self {}
    }

    /// Never called: there is no mirror.
    pub async fn mirror(&self, _: &str, _: u64) -> Result<()> {
        match *self {}
    }
}

/// Where `models.uri` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket and key prefix (without trailing slash; may be empty).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix under which `<model>/<version>/` live.
        prefix: String,
    },
}

/// The version a directory (or key segment) named `name` holds: a positive integer in canonical
/// decimal form, or `None`. `06`, `+6`, ` 6` and `0` are not versions: were `06` read as 6, the
/// loader would look in `6/` and mark version 6 failed for good.
pub fn parse_version(name: &str) -> Option<u64> {
    let canonical = name.bytes().all(|b| b.is_ascii_digit()) && !name.starts_with('0');
    canonical.then(|| name.parse().ok()).flatten()
}

impl Source {
    /// Parses `models.uri`: `s3://bucket/prefix` or a local path.
    pub fn parse(uri: &str) -> Result<Self> {
        let Some(rest) = uri.strip_prefix("s3://") else {
            return Ok(Self::Local(PathBuf::from(uri)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(Box::new(figment::Error::from(format!(
                "models.uri `{uri}` names no bucket; expected s3://bucket/prefix"
            )))));
        }
        // S3's own rule for bucket names; it also keeps `user:secret@` out of the logs, which
        // name the bucket. The URI is not echoed, for the same reason.
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c);
        if !bucket.chars().all(allowed) {
            return Err(Error::Config(Box::new(figment::Error::from(
                "models.uri: an S3 bucket name holds only a-z, 0-9, `.` and `-` \
                 (credentials come from the AWS chain, never from the URI)"
                    .to_string(),
            ))));
        }
        Ok(Self::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_positive_integers_are_versions() {
        assert_eq!(parse_version("6"), Some(6));
        assert_eq!(parse_version("10"), Some(10));
        for name in
            ["06", "+6", " 6", "6 ", "0", "", "-1", "6a", ".staging-6", "99999999999999999999"]
        {
            assert_eq!(parse_version(name), None, "{name:?}");
        }
    }

    #[test]
    fn uris_name_a_directory_or_a_bucket_and_prefix() {
        assert_eq!(Source::parse("models").unwrap(), Source::Local("models".into()));
        assert_eq!(
            Source::parse("s3://bucket/team/models/").unwrap(),
            Source::S3 { bucket: "bucket".into(), prefix: "team/models".into() }
        );
        assert_eq!(
            Source::parse("s3://bucket").unwrap(),
            Source::S3 { bucket: "bucket".into(), prefix: String::new() }
        );
        assert!(Source::parse("s3:///models").is_err());
        let error = Source::parse("s3://key:secret@bucket/models").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
    }
}
