//! The pipeline's typed endpoints and their OpenAPI description:
//!
//! - `POST /v1/predict`: the serving versions answer, or the one named by the request header
//!   `x-model-version: <model>=<version>`;
//! - `POST /v1/models/{model}/versions/{version}/predict`: that loaded version answers;
//! - `POST <path>` for each of the pipeline's own [`endpoints`](crate::Pipeline::endpoints),
//!   in the endpoint's request and response shapes (a version may be asked for as on
//!   `/v1/predict`).
//!
//! Every answer names the versions that produced it in `x-model-version`, and says where the
//! time went in `Server-Timing` (`pre`, the pipeline's own [`Laps`](crate::Laps), `queue`,
//! `infer`, `post`, in milliseconds; `cache` alone, with `desc=memory` or `desc=redis`, for an
//! answer from the response cache). The handlers are generic over the pipeline, which
//! `#[utoipa::path]` cannot describe, so the operations are built here, next to the routes,
//! from the pipeline's (and endpoints') `ToSchema` types.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, post_service};
use futures_util::FutureExt;
use tower::Service;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::path::PathParams;
use crate::context::Context;
use crate::digits;
use crate::endpoint::Route;
use crate::engine::{Engine, Served};
use crate::error::Error;
use crate::http::body::EndpointBody;
use crate::http::json::JsonBody;
use crate::http::problem::{self, Problem};
use crate::pipeline::Pipeline;

/// The route's path.
pub const PATH: &str = "/v1/predict";

/// The route that asks one model version for the answer.
const VERSIONED_PATH: &str = "/v1/models/{model}/versions/{version}/predict";

/// Request and response header naming model versions as `name=version`; a response lists
/// every model that ran, comma separated, in run order.
pub const MODEL_VERSION_HEADER: &str = "x-model-version";

/// [`MODEL_VERSION_HEADER`] as a header name: inserting by `&str` parses and copies the name
/// on every request.
static MODEL_VERSION: HeaderName = HeaderName::from_static(MODEL_VERSION_HEADER);

/// The `Server-Timing` header (W3C), which `http` has no constant for.
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The predict routes and the pipeline's own endpoints, with their OpenAPI operations and
/// schemas.
pub(crate) fn routes<P: Pipeline>(engine: Arc<Engine<P>>, body_limit: usize) -> OpenApiRouter {
    let endpoints = engine.pipeline().endpoints();
    let mut api = openapi(engine.pipeline());
    let mut router = OpenApiRouter::new()
        .route(PATH, post_service(service(Arc::clone(&engine), body_limit)))
        .route(VERSIONED_PATH, post(predict_version::<P>))
        .with_state(Arc::clone(&engine));
    for route in endpoints.routes() {
        describe(&mut api, route.as_ref());
        let state = (Arc::clone(&engine), Arc::clone(route));
        router = router.route(route.path(), post(endpoint::<P>).with_state(state));
    }
    OpenApiRouter::with_openapi(api).merge(router)
}

/// A pipeline endpoint's state: the engine and the route it serves.
type EndpointState<P> =
    (Arc<Engine<P>>, Arc<dyn Route<<P as Pipeline>::Input, <P as Pipeline>::Output>>);

/// `POST <path>` of one of the pipeline's endpoints: a JSON body, or one of the route's own
/// media types (see [`EndpointBody`]).
async fn endpoint<P: Pipeline>(
    State((engine, route)): State<EndpointState<P>>,
    request: Request,
) -> Response {
    let context = Context::current();
    let input = match EndpointBody::read(request, route.media_types()).await {
        Ok(EndpointBody::Json(body)) => route.input(&body, &context),
        Ok(EndpointBody::Media { bytes, media_type }) => route.read(&bytes, &media_type, &context),
        Err(error) => Err(error),
    };
    match input {
        Ok(input) => answer_as_asked(&engine, input, &context, Some(route.as_ref())).await,
        Err(error) => problem::respond_on(route.as_ref(), &error),
    }
}

/// `POST /v1/predict` as a service: what the router serves on [`PATH`], and what
/// [`Dispatch`](super::Dispatch) calls without the router. It reads bodies of up to
/// `body_limit` bytes (`limits.body_bytes`) on its own, with no `DefaultBodyLimit` needed.
///
/// Written as a `service_fn` rather than an axum handler, which wraps the same future in two
/// more layers of its own. The future is boxed as a handler's is: it holds the whole engine's,
/// and the layers around it each move what they wrap, so that held inline it was copied
/// several times over (600 instructions a request more than boxed).
pub(crate) fn service<P: Pipeline>(
    engine: Arc<Engine<P>>,
    body_limit: usize,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |request| {
        predict(Arc::clone(&engine), request, body_limit).map(Ok).boxed()
    })
}

/// `POST /v1/predict`: the body (of up to `body_limit` bytes) read as the pipeline's input,
/// and answered. The request's headers are read from its context, which holds them: moved
/// there by [`Dispatch`](super::Dispatch), copied by the router.
async fn predict<P: Pipeline>(
    engine: Arc<Engine<P>>,
    request: Request,
    body_limit: usize,
) -> Response {
    let context = Context::current();
    match JsonBody::<P::Input>::within(context.headers(), request, body_limit).await {
        Ok(JsonBody(input)) => answer_as_asked(&engine, input, &context, None).await,
        Err(error) => error.into_response(),
    }
}

/// Answers `input` (in the shape of `route`, when given) with the model version the request
/// asks for in `x-model-version` (among the headers of its `context`), if any.
async fn answer_as_asked<P: Pipeline>(
    engine: &Engine<P>,
    input: P::Input,
    context: &Context,
    route: Option<&dyn Route<P::Input, P::Output>>,
) -> Response {
    match requested_version(context.headers()) {
        Ok(requested) => {
            let version = requested.as_ref().map(|(model, version)| (model.as_str(), *version));
            answer(engine, input, version, route).await
        }
        Err(error) => match route {
            Some(route) => problem::respond_on(route, &error),
            None => error.into_response(),
        },
    }
}

async fn predict_version<P: Pipeline>(
    State(engine): State<Arc<Engine<P>>>,
    PathParams((model, version), _): PathParams<(String, String)>,
    JsonBody(input): JsonBody<P::Input>,
) -> Response {
    match version.parse() {
        Ok(version) => answer(&engine, input, Some((&model, version)), None).await,
        Err(_) => Error::invalid_field("version", format!("`{version}` is not a version number"))
            .into_response(),
    }
}

/// Runs the pipeline, through the response cache when the pipeline gives a key, answering in
/// the shape of `route` when given.
async fn answer<P: Pipeline>(
    engine: &Engine<P>,
    input: P::Input,
    version: Option<(&str, u64)>,
    route: Option<&dyn Route<P::Input, P::Output>>,
) -> Response {
    match (engine.answer_through(input, version, route).await, route) {
        (Ok(served), _) => respond(&served),
        (Err(error), Some(route)) => problem::respond_on(route, &error),
        (Err(error), None) => problem::respond(&error),
    }
}

/// The model version a request asks for in `x-model-version`, if it names one.
fn requested_version(headers: &HeaderMap) -> Result<Option<(String, u64)>, Error> {
    // An empty value asks for nothing, as an absent header does.
    let Some(value) = headers.get(&MODEL_VERSION).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad =
        |detail: &str| Error::BadHeader { header: MODEL_VERSION_HEADER, detail: detail.into() };
    let text = value.to_str().map_err(|_| bad("is not text"))?;
    let (model, version) =
        text.split_once('=').ok_or_else(|| bad("expected `<model>=<version>`"))?;
    let version = version.trim().parse().map_err(|_| bad("the version is not a number"))?;
    Ok(Some((model.trim().to_string(), version)))
}

/// The JSON response with `x-model-version` and `Server-Timing`.
fn respond(served: &Served) -> Response {
    let answer = &served.answer;
    // Made as it is sent: `(headers, bytes).into_response()` sets the bytes' own content type
    // first, then replaces it.
    let mut response = Response::new(Body::from(answer.body.clone()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Room for every name, `=`, a version of up to 20 digits and `, `: no regrowing.
    let room = answer.versions.iter().map(|(name, _)| name.len() + 23).sum();
    let mut versions = String::with_capacity(room);
    for (name, version) in &answer.versions {
        if !versions.is_empty() {
            versions.push_str(", ");
        }
        versions.push_str(name);
        versions.push('=');
        digits::push_decimal(&mut versions, *version, 1);
    }
    // The values keep their strings: no copy.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(versions)) {
        headers.insert(&MODEL_VERSION, value);
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(served.server_timing())) {
        headers.insert(&SERVER_TIMING, value);
    }
    response
}

fn openapi<P: Pipeline>(pipeline: &P) -> OpenApi {
    let mut schemas = vec![
        (P::Input::name().into_owned(), P::Input::schema()),
        (P::Output::name().into_owned(), P::Output::schema()),
        (Problem::name().into_owned(), Problem::schema()),
    ];
    P::Input::schemas(&mut schemas);
    P::Output::schemas(&mut schemas);
    let predict = |id, answered_by: &str, parameters| {
        operation(Operated {
            id,
            tag: "predict",
            summary: format!(
                "Run the {} pipeline on one input, answered by {answered_by}",
                pipeline.name()
            ),
            request: P::Input::name().into_owned(),
            example: pipeline.example().and_then(|input| serde_json::to_value(input).ok()),
            response: P::Output::name().into_owned(),
            parameters,
        })
    };
    let latest = predict("predict", "the serving model versions", vec![version_header()]);
    let path_parameters = vec![
        parameter("model", ParameterIn::Path, "Model name", Required::True, String::schema()),
        parameter("version", ParameterIn::Path, "A loaded version", Required::True, u64::schema()),
    ];
    let versioned = predict("predict_version", "one loaded model version", path_parameters);
    let mut api = OpenApi::default();
    api.paths.add_path_operation(PATH, vec![HttpMethod::Post], latest);
    api.paths.add_path_operation(VERSIONED_PATH, vec![HttpMethod::Post], versioned);
    api.components = Some(ComponentsBuilder::new().schemas_from_iter(schemas).build());
    api
}

/// Adds the operation of the pipeline endpoint `route` and its schemas to `api`.
fn describe<I, O>(api: &mut OpenApi, route: &dyn Route<I, O>) {
    let schemas = route.schemas();
    let id = format!("post{}", route.path().replace(['/', '-', '.', '{', '}'], "_"));
    let mut described = operation(Operated {
        id: &id,
        tag: "service",
        summary: route.summary(),
        request: schemas.request,
        example: schemas.example,
        response: schemas.response,
        parameters: vec![version_header()],
    });
    if let Some(body) = described.request_body.as_mut() {
        add_media_types(body, route.media_types());
    }
    api.paths.add_path_operation(route.path(), vec![HttpMethod::Post], described);
    let components = api.components.get_or_insert_with(Default::default);
    components.schemas.extend(schemas.all);
}

/// Adds to an endpoint's request `body` its own `media_types` (as binary strings), and the
/// `multipart/form-data` upload of a file of one of them.
fn add_media_types(body: &mut RequestBody, media_types: &[&str]) {
    if media_types.is_empty() {
        return;
    }
    let binary = || {
        let format = SchemaFormat::KnownFormat(KnownFormat::Binary);
        ObjectBuilder::new().schema_type(Type::String).format(Some(format))
    };
    for media_type in media_types {
        let content = ContentBuilder::new().schema(Some(binary().build())).build();
        body.content.insert((*media_type).to_string(), content);
    }
    let description = format!("The file, declared as one of {}", media_types.join(", "));
    let file = binary().description(Some(description));
    let form = ObjectBuilder::new().property("file", file).required("file").build();
    let form = ContentBuilder::new().schema(Some(form)).build();
    body.content.insert("multipart/form-data".to_string(), form);
}

/// The optional request header that asks one loaded version for the answer, with the shape
/// `requested_version` accepts.
fn version_header() -> Parameter {
    let shape = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^([A-Za-z0-9._-]+=[0-9]{1,18})?$"))
        .build();
    parameter(
        MODEL_VERSION_HEADER,
        ParameterIn::Header,
        "Ask one loaded model version for the answer: `<model>=<version>`",
        Required::False,
        shape.into(),
    )
}

/// A documented parameter.
fn parameter(
    name: &str,
    location: ParameterIn,
    description: &str,
    required: Required,
    schema: RefOr<Schema>,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .description(Some(description))
        .required(required)
        .schema(Some(schema))
        .build()
}

/// What one operation that runs the pipeline is made of.
struct Operated<'a> {
    id: &'a str,
    /// `predict` for the framework's routes, `service` for the pipeline's own.
    tag: &'static str,
    summary: String,
    /// The request body's schema name.
    request: String,
    example: Option<serde_json::Value>,
    /// The response body's schema name.
    response: String,
    parameters: Vec<Parameter>,
}

/// An operation that runs the pipeline: its request and response, and every problem it can
/// answer.
fn operation(operated: Operated<'_>) -> Operation {
    let Operated { id, tag, summary, request, example, response, parameters } = operated;
    let body =
        ContentBuilder::new().schema(Some(Ref::from_schema_name(request))).example(example).build();
    let problem =
        || ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).build();
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(problem::CONTENT_TYPE, problem())
            .build()
    };
    OperationBuilder::new()
        .tag(tag)
        .operation_id(Some(id))
        .summary(Some(summary))
        .parameters(Some(parameters))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", body)
                .required(Some(Required::True))
                .build(),
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The prediction; header `x-model-version` names the versions used")
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name(response))).build(),
                ),
        )
        .response("400", error("The body is not valid JSON, or a header is malformed"))
        .response("404", error("The model or version asked for is not loaded"))
        .response("413", error("The body is larger than the limit"))
        .response("415", error("The body is not declared as a media type the route reads"))
        .response("422", error("A field is missing, of the wrong type or out of range"))
        .response("503", error("Not ready, or overloaded: retry after `Retry-After` seconds"))
        .response("504", error("The request missed its deadline"))
        .build()
}
