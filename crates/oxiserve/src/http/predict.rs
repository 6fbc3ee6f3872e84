//! `POST /v1/predict`: the pipeline's typed endpoint, and its OpenAPI description.
//!
//! The handler is generic over the pipeline, which `#[utoipa::path]` cannot describe, so the
//! operation is built here, next to the route, from the pipeline's `ToSchema` types.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, OpenApi, Ref, Required, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::engine::Engine;
use crate::error::Error;
use crate::http::json::JsonBody;
use crate::http::problem::{self, Problem};
use crate::pipeline::Pipeline;

/// The route's path.
pub const PATH: &str = "/v1/predict";

/// The predict route with its OpenAPI operation and schemas.
pub(crate) fn routes<P: Pipeline>(engine: Arc<Engine<P>>) -> OpenApiRouter {
    let api = openapi(engine.pipeline());
    OpenApiRouter::with_openapi(api).route(PATH, post(predict::<P>)).with_state(engine)
}

/// The response header naming the model versions that answered: `name=version`, comma
/// separated, in run order.
pub const MODEL_VERSION_HEADER: &str = "x-model-version";

async fn predict<P: Pipeline>(
    State(engine): State<Arc<Engine<P>>>,
    JsonBody(input): JsonBody<P::Input>,
) -> Result<Response, Error> {
    let answer = engine.predict(input).await?;
    let versions: Vec<String> =
        answer.versions.iter().map(|(name, v)| format!("{name}={v}")).collect();
    let mut response = Json(answer.output).into_response();
    if let Ok(value) = HeaderValue::from_str(&versions.join(", ")) {
        response.headers_mut().insert(MODEL_VERSION_HEADER, value);
    }
    Ok(response)
}

fn openapi<P: Pipeline>(pipeline: &P) -> OpenApi {
    let mut schemas = vec![
        (P::Input::name().into_owned(), P::Input::schema()),
        (P::Output::name().into_owned(), P::Output::schema()),
        (Problem::name().into_owned(), Problem::schema()),
    ];
    P::Input::schemas(&mut schemas);
    P::Output::schemas(&mut schemas);
    let example = pipeline.example().and_then(|input| serde_json::to_value(input).ok());
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(P::Input::name())))
        .example(example)
        .build();
    let problem =
        || ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).build();
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(problem::CONTENT_TYPE, problem())
            .build()
    };
    let operation = OperationBuilder::new()
        .tag("predict")
        .operation_id(Some("predict"))
        .summary(Some(format!("Run the {} pipeline on one input", pipeline.name())))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", body)
                .required(Some(Required::True))
                .build(),
        ))
        .response(
            "200",
            ResponseBuilder::new().description("The prediction").content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(P::Output::name())))
                    .build(),
            ),
        )
        .response("400", error("The body is not valid JSON"))
        .response("413", error("The body is larger than the limit"))
        .response("415", error("The body is not declared as JSON"))
        .response("422", error("A field is missing, of the wrong type or out of range"))
        .response("503", error("Not ready, or overloaded: retry after `Retry-After` seconds"))
        .response("504", error("The request missed its deadline"))
        .build();
    let mut api = OpenApi::default();
    api.paths.add_path_operation(PATH, vec![HttpMethod::Post], operation);
    api.components = Some(ComponentsBuilder::new().schemas_from_iter(schemas).build());
    api
}
