//! What the resource modules' handlers share: reading bodies and query strings into the
//! API's errors (400, 413, 422 naming the field), seed 003's paging, and running store
//! work off the async threads.

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;
use crate::store::{Backend, MAX_PAGE};
use std::sync::Arc;

/// Page size when the caller names none.
pub(super) const DEFAULT_PAGE_SIZE: usize = 50;

/// Runs store work where it holds up no async worker ([`Backend::off_thread`]): on the
/// blocking pool for redb, whose commits wait for the disk.
pub(super) async fn blocking<T, F>(
    store: &Arc<Backend>,
    work: impl FnOnce(Arc<Backend>) -> F + Send + 'static,
) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    store.off_thread(work).await
}

/// A JSON body, or the error that says what is wrong with it: 413 when it is too
/// large, 400 when it is not JSON, 422 when a field does not fit.
pub(super) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(too_large(rejection.body_text()))
        }
        Err(rejection) => Err(rejection.into()),
    }
}

pub(super) fn too_large(detail: String) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is too large: {detail}"),
    )
}

/// Query parameters, or 400 naming what is wrong with them.
pub(super) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    })
}

/// `page` (from 1) and `page_size` (1 to 1000), as seed 003 names them.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Paging {
    /// Page number, from 1.
    #[param(minimum = 1, default = 1)]
    page: Option<usize>,
    /// Records per page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000, default = 50)]
    page_size: Option<usize>,
}

impl Paging {
    /// `(page, page_size, offset)`, or 400 when out of range.
    pub(super) fn resolve(self) -> Result<(usize, usize, usize), ApiError> {
        let page = self.page.unwrap_or(1);
        let size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "page: pages are numbered from 1",
            ));
        }
        if !(1..=MAX_PAGE).contains(&size) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("page_size: must be between 1 and {MAX_PAGE}"),
            ));
        }
        let offset = (page - 1).checked_mul(size).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "page: out of range",
            )
        })?;
        Ok((page, size, offset))
    }
}
