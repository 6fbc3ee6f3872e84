//! A service's own routes: [`Endpoint`], a request shape of the service's choosing (an
//! OpenAI-compatible `/v1/embeddings`, a legacy path a client already calls) mapped onto the
//! pipeline's input, and the pipeline's output mapped onto a response of its own.
//!
//! A pipeline lists its endpoints in [`Pipeline::endpoints`](crate::Pipeline::endpoints); the
//! HTTP layer serves each as `POST <path>` next to `/v1/predict`, through the same engine,
//! limits, deadline, metrics, response cache and problem+json errors, and describes it in
//! `/openapi.json` with the endpoint's own schemas.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::json;

/// One route of a service's own, answered by its pipeline.
///
/// `Input` and `Output` are the pipeline's; [`input`](Endpoint::input) turns the route's
/// request into the pipeline's input and [`output`](Endpoint::output) the pipeline's output
/// into the route's response. Errors are answered as the pipeline's are: return
/// [`Error::invalid_field`] for a request the client must fix.
///
/// ```
/// use oxiserve::{Context, Endpoint, Result};
/// use serde::{Deserialize, Serialize};
///
/// # #[derive(Serialize, Deserialize, utoipa::ToSchema)] struct Input { x: f32 }
/// # #[derive(Serialize, utoipa::ToSchema)] struct Output { y: f32 }
/// /// The path an older client still calls, with its field names.
/// struct Legacy;
///
/// #[derive(Serialize, Deserialize, utoipa::ToSchema)]
/// struct LegacyRequest { value: f32 }
///
/// #[derive(Serialize, utoipa::ToSchema)]
/// struct LegacyResponse { result: f32 }
///
/// impl Endpoint for Legacy {
///     type Input = Input;
///     type Output = Output;
///     type Request = LegacyRequest;
///     type Response = LegacyResponse;
///
///     fn path(&self) -> &str { "/double" }
///
///     fn input(&self, request: LegacyRequest, _: &Context) -> Result<Input> {
///         Ok(Input { x: request.value })
///     }
///
///     fn output(&self, output: Output, _: &Context) -> Result<LegacyResponse> {
///         Ok(LegacyResponse { result: output.y })
///     }
/// }
/// ```
pub trait Endpoint: Send + Sync + 'static {
    /// The pipeline's input.
    type Input;
    /// The pipeline's output.
    type Output;
    /// The route's request body; its serde and `ToSchema` derive define the JSON accepted and
    /// the schema shown in `/openapi.json`.
    type Request: DeserializeOwned + Serialize + ToSchema + Send + 'static;
    /// The route's response body.
    type Response: Serialize + ToSchema + Send + 'static;

    /// The route's path, served for `POST`. It must not be one of the framework's.
    fn path(&self) -> &str;

    /// One line for the OpenAPI document.
    fn summary(&self) -> String {
        format!("Run the pipeline through {}", self.path())
    }

    /// The pipeline's input for `request`.
    fn input(&self, request: Self::Request, context: &Context) -> Result<Self::Input>;

    /// The route's response for the pipeline's `output`.
    fn output(&self, output: Self::Output, context: &Context) -> Result<Self::Response>;

    /// A valid request, shown as the example in the OpenAPI document.
    fn example(&self) -> Option<Self::Request> {
        None
    }

    /// The media types of bodies this route reads besides JSON (`image/png`, `text/csv`): a
    /// body declared as one of them, or the file of a `multipart/form-data` upload declared as
    /// one, reaches [`read`](Endpoint::read) as it was sent. Any other type is a 415 that
    /// names these. None, the default: JSON only.
    fn media_types(&self) -> &[&'static str] {
        &[]
    }

    /// The route's request for `body`, sent as `media_type` (one of
    /// [`media_types`](Endpoint::media_types), lowercase, without parameters). The default,
    /// for routes that read JSON only, is never called.
    fn read(&self, body: &[u8], media_type: &str, context: &Context) -> Result<Self::Request> {
        let _ = (body, context);
        Err(Error::UnsupportedMediaType(format!("`{media_type}`")))
    }

    /// How this route answers an error, for clients that expect another shape than RFC 9457
    /// problem+json (OpenAI's clients read `{"error": {"message": ...}}`): the status and
    /// JSON body to send for `failure`. `None`, the default, answers problem+json. Errors of
    /// the request's framing (a body too large, a content type that is not JSON) are answered
    /// before the route is known, as problem+json.
    fn error(&self, failure: &Failure<'_>) -> Option<ErrorReply> {
        let _ = failure;
        None
    }
}

/// An error as problem+json would describe it, for [`Endpoint::error`] to write in its own
/// shape. Server errors carry only the kind of failure, never internals.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The HTTP status problem+json would answer.
    pub status: u16,
    /// The machine name of the kind of problem (`invalid-input`, `overloaded`, ...).
    pub kind: &'a str,
    /// What went wrong, as the client may be told.
    pub detail: &'a str,
    /// The JSON path of the offending request field, when there is one.
    pub field: Option<&'a str>,
}

/// An error answered in a route's own shape (see [`Endpoint::error`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// The endpoints of a pipeline with input `I` and output `O`, built with [`Endpoints::post`].
pub struct Endpoints<I, O> {
    list: Vec<Arc<dyn Route<I, O>>>,
}

impl<I, O> Default for Endpoints<I, O> {
    fn default() -> Self {
        Self { list: Vec::new() }
    }
}

impl<I, O> std::fmt::Debug for Endpoints<I, O> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.list.iter().map(|route| route.path())).finish()
    }
}

impl<I: 'static, O: 'static> Endpoints<I, O> {
    /// No endpoint of the service's own.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `endpoint`, served for `POST` on its path.
    pub fn post<E: Endpoint<Input = I, Output = O>>(mut self, endpoint: E) -> Self {
        self.list.push(Arc::new(endpoint));
        self
    }

    /// The endpoints, in the order they were added.
    pub(crate) fn routes(&self) -> impl Iterator<Item = &Arc<dyn Route<I, O>>> {
        self.list.iter()
    }
}

/// An [`Endpoint`] with its types erased, as the HTTP layer and the engine use it.
pub(crate) trait Route<I, O>: Send + Sync {
    /// The path it is served on.
    fn path(&self) -> &str;
    /// The OpenAPI summary.
    fn summary(&self) -> String;
    /// The pipeline's input for a JSON `body` (parse errors name the field, as for predict).
    fn input(&self, body: &[u8], context: &Context) -> Result<I>;
    /// The media types it reads besides JSON.
    fn media_types(&self) -> &[&'static str];
    /// The pipeline's input for a `body` of one of those media types.
    fn read(&self, body: &[u8], media_type: &str, context: &Context) -> Result<I>;
    /// The JSON response for the pipeline's `output`.
    fn respond(&self, output: O, context: &Context) -> Result<Vec<u8>>;
    /// The request and response schema names, every schema they use, and the example.
    fn schemas(&self) -> Schemas;
    /// The route's own answer to an error, if it has one (see [`Endpoint::error`]).
    fn error(&self, failure: &Failure<'_>) -> Option<ErrorReply>;
}

/// What the OpenAPI document needs of a route's types.
pub(crate) struct Schemas {
    /// The request body's schema name.
    pub(crate) request: String,
    /// The response body's schema name.
    pub(crate) response: String,
    /// Both, with every schema they refer to.
    pub(crate) all: Vec<(String, RefOr<Schema>)>,
    /// The example request, as JSON.
    pub(crate) example: Option<serde_json::Value>,
}

impl<E: Endpoint> Route<E::Input, E::Output> for E {
    fn path(&self) -> &str {
        Endpoint::path(self)
    }

    fn summary(&self) -> String {
        Endpoint::summary(self)
    }

    fn input(&self, body: &[u8], context: &Context) -> Result<E::Input> {
        Endpoint::input(self, json::parse(body)?, context)
    }

    fn media_types(&self) -> &[&'static str] {
        Endpoint::media_types(self)
    }

    fn read(&self, body: &[u8], media_type: &str, context: &Context) -> Result<E::Input> {
        let request = Endpoint::read(self, body, media_type, context)?;
        Endpoint::input(self, request, context)
    }

    fn respond(&self, output: E::Output, context: &Context) -> Result<Vec<u8>> {
        let response = Endpoint::output(self, output, context)?;
        serde_json::to_vec(&response).map_err(|e| {
            Error::pipeline(format!("the response of {} does not serialise: {e}", self.path()))
        })
    }

    fn schemas(&self) -> Schemas {
        let mut all = vec![
            (E::Request::name().into_owned(), E::Request::schema()),
            (E::Response::name().into_owned(), E::Response::schema()),
        ];
        E::Request::schemas(&mut all);
        E::Response::schemas(&mut all);
        Schemas {
            request: E::Request::name().into_owned(),
            response: E::Response::name().into_owned(),
            all,
            example: Endpoint::example(self).and_then(|r| serde_json::to_value(r).ok()),
        }
    }

    fn error(&self, failure: &Failure<'_>) -> Option<ErrorReply> {
        Endpoint::error(self, failure)
    }
}
