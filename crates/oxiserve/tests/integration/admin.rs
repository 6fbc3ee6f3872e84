//! The admin API: bearer-token access, rollback, pin and unpin, and sync on demand, on the
//! test model `token-pool`.

use crate::common;

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use oxiserve::Config;
use oxiserve::config::{Secret, VersionPolicy};
use oxiserve::testing::{TestApp, TestResponse};
use serde_json::Value;

use crate::common::{MODEL, TokenPool};

const TOKEN: &str = "correct horse battery staple";

/// Settings on the repository at `root` (version 1 of `token-pool` published there), one
/// session, no polling (syncs happen when asked), no response cache.
fn repository_config(root: &Path) -> Config {
    common::publish(root, 1, |_| {});
    let mut config = Config::default();
    config.models.uri = root.display().to_string();
    config.models.sessions = 1;
    config.models.poll_interval = Duration::ZERO;
    config.cache.capacity = 0;
    config
}

/// The service with the admin API on, keeping two versions loaded.
async fn admin_app(root: &Path) -> TestApp<TokenPool> {
    let mut config = repository_config(root);
    config.admin.token = Some(Secret::new(TOKEN));
    config.models.policy = VersionPolicy::Latest(2);
    TestApp::with_config(TokenPool::new(), config).await.unwrap()
}

async fn admin(
    app: &TestApp<TokenPool>,
    action: &str,
    token: Option<&str>,
    body: &str,
) -> TestResponse {
    let mut request = Request::post(format!("/admin/models/{MODEL}/{action}"));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    app.request(request.body(Body::from(body.to_string())).unwrap()).await
}

async fn ok(app: &TestApp<TokenPool>, action: &str, body: &str) -> Value {
    let response = admin(app, action, Some(TOKEN), body).await;
    assert_eq!(response.status, StatusCode::OK, "{action}: {}", response.text());
    response.json()
}

#[tokio::test]
async fn admin_routes_need_the_token_and_say_nothing_more() {
    let tmp = tempfile::tempdir().unwrap();
    let app = admin_app(tmp.path()).await;
    let missing = admin(&app, "sync", None, "").await;
    let wrong = admin(&app, "sync", Some("correct horse"), "").await;
    for response in [&missing, &wrong] {
        assert_eq!(response.problem().status, 401);
        assert_eq!(response.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    assert_eq!(missing.body, wrong.body, "no hint of which part was wrong");

    let off = TestApp::with_config(TokenPool::new(), repository_config(tmp.path())).await.unwrap();
    assert_eq!(
        admin(&off, "sync", Some(TOKEN), "").await.problem().status,
        404,
        "off without a token"
    );
    let unknown = admin_request_for(&app, "nothing").await;
    assert_eq!(unknown.problem().status, 404);

    let get = Request::get("/admin/models/token-pool/sync").body(Body::empty()).unwrap();
    let get = app.request(get).await;
    assert_eq!(get.problem().status, 401, "a wrong method without a token learns nothing");
    assert_eq!(get.body, missing.body);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let tmp = tempfile::tempdir().unwrap();
    let app = admin_app(tmp.path()).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let request = Request::post("/admin/models/token-pool/sync")
            .header(header::AUTHORIZATION, format!("{scheme} {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.request(request).await.status, StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn an_empty_or_short_token_is_refused() {
    for token in ["", "short-token"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = repository_config(tmp.path());
        config.admin.token = Some(Secret::new(token));
        let Err(error) = TestApp::with_config(TokenPool::new(), config).await else {
            panic!("a token of {} characters was accepted", token.len());
        };
        assert!(error.to_string().contains("admin.token"), "{error}");
    }
}

async fn admin_request_for(app: &TestApp<TokenPool>, model: &str) -> TestResponse {
    let request = Request::post(format!("/admin/models/{model}/pin"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    app.request(request).await
}

#[tokio::test]
async fn sync_pin_unpin_and_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let app = admin_app(tmp.path()).await;

    common::publish(tmp.path(), 2, |_| {});
    assert_eq!(common::served_version(&app).await, 1, "polling is off");
    assert_eq!(ok(&app, "sync", "").await["version"], 2);

    let pinned = ok(&app, "pin", r#"{"version": 1}"#).await;
    assert_eq!((pinned["version"].as_u64(), pinned["pinned"].as_u64()), (Some(1), Some(1)));
    common::publish(tmp.path(), 3, |_| {});
    let synced = ok(&app, "sync", "").await;
    assert_eq!(synced["version"], 1, "a pin holds while new versions arrive: {synced}");
    assert_eq!(synced["versions"], serde_json::json!([1, 3]), "the pinned version stays loaded");
    assert_eq!(common::served_version(&app).await, 1);
    assert_eq!(admin(&app, "pin", Some(TOKEN), r#"{"version": 2}"#).await.problem().status, 404);

    assert_eq!(ok(&app, "unpin", "").await["version"], 3);
    assert_eq!(common::served_version(&app).await, 3);

    // Version 2 was unloaded when 3 arrived (two kept, one of them pinned): rollback loads it.
    let rolled = ok(&app, "rollback", "").await;
    assert_eq!(rolled["version"], 2, "back to the previous good version: {rolled}");
    let failed = rolled["failed_versions"].as_array().unwrap();
    let retired =
        |f: &Value| f["version"] == 3 && f["error"].as_str().unwrap().contains("rolled back");
    assert!(failed.iter().any(retired), "{rolled}");
    assert_eq!(common::served_version(&app).await, 2);
    let synced = ok(&app, "sync", "").await;
    assert_eq!(synced["version"], 2, "a rolled-back version is not adopted again");

    assert_eq!(ok(&app, "rollback", "").await["version"], 1);
    let last = admin(&app, "rollback", Some(TOKEN), "").await;
    assert_eq!(last.problem().status, 422, "nothing older than version 1");
    assert_eq!(common::served_version(&app).await, 1, "a refused rollback changes nothing");
}
