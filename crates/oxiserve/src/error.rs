//! The crate's one error type.
//!
//! Every failure, from a malformed request body to a corrupted model file, is a variant of
//! [`Error`]. Each error has a kind (status, machine name, title), a public detail and a log
//! level, defined here once; the transports build their answers from them: HTTP in
//! `http::problem` (RFC 9457 problem+json), gRPC statuses in `grpc`. Client errors carry what
//! was wrong and where; server errors keep internals for the log.

use std::path::PathBuf;

/// Result alias used throughout the crate and by pipelines.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while starting up or serving a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request body is not syntactically valid JSON.
    #[error("malformed JSON body: {0}")]
    MalformedBody(String),

    /// The request path matched a route, but a parameter in it does not decode (not UTF-8,
    /// or not of the parameter's type).
    #[error("malformed request path: {0}")]
    MalformedPath(String),

    /// The request body exceeds the configured size limit.
    #[error("the request body is larger than the limit set by `limits.body_bytes`")]
    PayloadTooLarge,

    /// The request's body is of a media type the route does not read (not JSON, or not one
    /// of a route's own types), or holds a file of a format the service does not read. Says
    /// what was sent, and what is read.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),

    /// The request is well-formed JSON but its content is not acceptable: a wrong type, a
    /// missing field or a value out of range. `field` is the JSON path of the culprit.
    #[error("{}{detail}", field.as_deref().map(|f| format!("`{f}`: ")).unwrap_or_default())]
    InvalidInput {
        /// JSON path of the offending field (`a.b[2]`), when there is one.
        field: Option<String>,
        /// What is wrong with it, in words a client can act on.
        detail: String,
    },

    /// The request is not authorised: a missing or wrong bearer token. Deliberately says
    /// nothing more.
    #[error("missing or invalid credentials")]
    Unauthorized,

    /// A request header is malformed.
    #[error("header `{header}`: {detail}")]
    BadHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// The service is still loading or warming up its models.
    #[error("the service is not ready: models are still loading")]
    NotReady,

    /// A model the pipeline asked for is not loaded.
    #[error("model `{0}` is not loaded")]
    ModelNotLoaded(String),

    /// The pipeline asked for a model it never declared in `Pipeline::models`: a programming
    /// error, answered 500 (not 503, which clients would retry).
    #[error("the pipeline asked for model `{0}`, which it does not declare")]
    UndeclaredModel(String),

    /// A request named a model the service does not have.
    #[error("the service has no model `{0}`")]
    UnknownModel(String),

    /// A request asked for a model version that is not loaded.
    #[error("version {version} of model `{model}` is not loaded")]
    VersionNotLoaded {
        /// The model.
        model: String,
        /// The version asked for.
        version: u64,
    },

    /// A bounded queue is full; the client should retry later.
    #[error("the server is overloaded, retry later")]
    Overloaded,

    /// The request did not finish within the configured deadline.
    #[error("the request did not complete within {0} ms")]
    Timeout(u64),

    /// Inference failed inside the backend, or the pipeline fed it tensors that do not match
    /// the model's signature.
    #[error("inference on `{model}` failed: {detail}")]
    Inference {
        /// The model (name and version) that failed.
        model: String,
        /// What the backend said.
        detail: String,
    },

    /// The server that runs a remote model did not answer (down, overloaded, past the call's
    /// deadline, or the model unloaded there), after the configured retries.
    #[error("model `{model}` runs on {endpoint}, which is unavailable: {detail}")]
    RemoteUnavailable {
        /// The model (name and version).
        model: String,
        /// The server's address.
        endpoint: String,
        /// What the server or the connection said.
        detail: String,
    },

    /// A fault inside oxiserve itself, not in the pipeline's code nor the client's request:
    /// becomes 500 (`INTERNAL`), with the detail only in the log.
    #[error("internal error: {0}")]
    Internal(String),

    /// The pipeline's own code failed in a way that is not the client's fault.
    #[error("pipeline error: {0}")]
    Pipeline(String),

    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{0}")]
    Runtime(String),

    /// A model in the repository is missing, corrupted or inconsistent with its manifest.
    #[error("model artifact {}: {detail}", path.display())]
    Artifact {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The remote model store could not be reached or answered with an error.
    #[error("model store unavailable: {0}")]
    Remote(String),

    /// The configuration could not be loaded.
    #[error("invalid configuration: {0}")]
    Config(#[from] Box<figment::Error>),

    /// An I/O error outside any request, e.g. binding the listener.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// A client error about one field of the input: becomes 422 with `field` in the body.
    ///
    /// Pipelines use this to reject values that deserialised fine but make no sense, such as a
    /// negative length.
    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidInput { field: Some(field.into()), detail: detail.into() }
    }

    /// A client error about the input as a whole: becomes 422.
    pub fn invalid_input(detail: impl Into<String>) -> Self {
        Self::InvalidInput { field: None, detail: detail.into() }
    }

    /// A server-side failure in pipeline code: becomes 500, with the detail only in the log.
    pub fn pipeline(detail: impl Into<String>) -> Self {
        Self::Pipeline(detail.into())
    }

    /// The error as public answers (`GET /v1/models`) show it, without file-system details:
    /// a local artifact's path from the directory of `model` on (`model/3/model.onnx`), and
    /// no path of a local I/O error. S3 addresses stay whole. The log keeps the whole error.
    pub fn public(&self, model: &str) -> String {
        match self {
            Self::Artifact { path, detail } if !path.starts_with("s3:") => {
                let parts: Vec<_> =
                    path.iter().map(|part| part.to_string_lossy().into_owned()).collect();
                let from = parts.iter().rposition(|part| part == model);
                let from = from.unwrap_or(parts.len().saturating_sub(1));
                format!("model artifact {}: {detail}", parts[from..].join("/"))
            }
            Self::Io { .. } => "an I/O error in the local model repository (see the log)".into(),
            other => other.to_string(),
        }
    }

    /// A fault inside oxiserve itself: becomes 500, with the detail only in the log.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::Internal(detail.into())
    }

    /// A problem with a file of a model artifact.
    pub(crate) fn artifact(path: impl Into<PathBuf>, detail: impl std::fmt::Display) -> Self {
        Self::Artifact { path: path.into(), detail: detail.to_string() }
    }

    /// An I/O failure, with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// What kind of failure an [`Error`] is, as every transport answers it: an HTTP status (4xx:
/// the client must fix something; 503 and 504: the service protecting itself, retry later;
/// 500: a fault), a stable machine name and a title. problem+json and gRPC statuses are both
/// built from it, so the transports cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The machine name (`invalid-input`), the end of the problem type's URN.
    pub(crate) slug: &'static str,
    /// A short summary.
    pub(crate) title: &'static str,
}

/// What a server fault tells the client: that it happened, not what it was.
pub(crate) const SERVER_FAULT_DETAIL: &str =
    "the server failed to handle the request; the error is in its log";

impl Error {
    /// The kind of this error (see [`Kind`]).
    pub(crate) fn kind(&self) -> Kind {
        let kind = |status, slug, title| Kind { status, slug, title };
        match self {
            Self::MalformedBody(_) => kind(400, "malformed-body", "Malformed JSON body"),
            Self::MalformedPath(_) => kind(400, "malformed-path", "Malformed request path"),
            Self::PayloadTooLarge => kind(413, "payload-too-large", "Request body too large"),
            Self::UnsupportedMediaType(_) => {
                kind(415, "unsupported-media-type", "Unsupported media type")
            }
            Self::InvalidInput { .. } => kind(422, "invalid-input", "Invalid input"),
            Self::BadHeader { .. } => kind(400, "bad-header", "Malformed header"),
            Self::Unauthorized => kind(401, "unauthorized", "Unauthorized"),
            Self::UnknownModel(_) => kind(404, "unknown-model", "Unknown model"),
            Self::VersionNotLoaded { .. } => {
                kind(404, "version-not-loaded", "Model version not loaded")
            }
            Self::NotReady => kind(503, "not-ready", "Service not ready"),
            Self::Overloaded => kind(503, "overloaded", "Service overloaded"),
            Self::Timeout(_) => kind(504, "timeout", "Request timed out"),
            Self::RemoteUnavailable { .. } => {
                kind(503, "remote-unavailable", "Remote model server unavailable")
            }
            Self::ModelNotLoaded(_) => kind(503, "model-not-loaded", "Model not loaded"),
            _ => kind(500, "internal", "Internal server error"),
        }
    }

    /// Whether the server is at fault (a 500): not the client's mistake, nor an overload, a
    /// timeout or a model that is not there.
    pub(crate) fn is_server_fault(&self) -> bool {
        self.kind().status == 500
    }

    /// What the client is told: the whole error when it is the client's to fix or a refusal,
    /// only [`SERVER_FAULT_DETAIL`] for a fault.
    pub(crate) fn public_detail(&self) -> String {
        match (self, self.kind().status) {
            (Self::InvalidInput { detail, .. }, _) => detail.clone(),
            (_, ..500 | 503 | 504) => self.to_string(),
            _ => SERVER_FAULT_DETAIL.to_string(),
        }
    }

    /// Logs this error as it is answered, if it is the server's: refusals (503, 504) at debug
    /// level, since an overload can cause thousands a second; faults at error level.
    pub(crate) fn log_answered(&self) {
        match self.kind().status {
            status @ (503 | 504) => tracing::debug!(error = %self, status, "request refused"),
            status @ 500.. => tracing::error!(error = %self, status, "request failed"),
            _ => {}
        }
    }
}

impl From<figment::Error> for Error {
    fn from(error: figment::Error) -> Self {
        Self::Config(Box::new(error))
    }
}
