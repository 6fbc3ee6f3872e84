//! [`PathParams`]: axum's `Path` extractor whose rejections are the crate's [`Error`], so that
//! a path that matched a route but whose parameters do not decode (`%ff` is not UTF-8) gets a
//! 400 in the route's error format instead of axum's plain text.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// The path parameters of a route, deserialised into `T`; a rejection becomes `R` (problem+json
/// by default, KServe v2's `{"error": ...}` on `/v2`).
#[derive(Debug)]
pub(crate) struct PathParams<T, R = Error>(pub(crate) T, pub(crate) std::marker::PhantomData<R>);

impl<T, R, S> FromRequestParts<S> for PathParams<T, R>
where
    T: DeserializeOwned + Send,
    R: From<Error> + IntoResponse,
    S: Send + Sync,
{
    type Rejection = R;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, R> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params, std::marker::PhantomData)),
            Err(rejection) => Err(Error::MalformedPath(rejection.body_text()).into()),
        }
    }
}
