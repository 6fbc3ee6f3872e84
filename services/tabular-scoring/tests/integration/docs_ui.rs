//! The API docs UI renders in a real headless Chromium with every non-loopback host
//! unresolvable: its assets come from the binary, not from a CDN.
//!
//! `cargo xtask test` installs Debian's chromium and points `CHROMIUM` at it.

use crate::common;

use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn docs_render_offline_in_headless_chromium() {
    let browser = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&browser).is_file(),
        "{browser} is missing: run `cargo xtask test`, which installs chromium"
    );
    let app = common::app().await;
    let server = app.serve().await.unwrap();
    let url = format!("{}/docs/", server.url());
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let dom = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // The network is off: only loopback resolves.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=20000",
                "--dump-dom",
            ])
            .arg(profile_arg)
            .arg(url)
            .output()
            .expect("chromium starts")
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    // Swagger UI builds these elements only after fetching and rendering /openapi.json.
    assert!(html.contains("opblock"), "no operation was rendered: {html:.2000}");
    assert!(html.contains("/v1/predict"), "the predict operation is shown: {html:.2000}");
    assert!(html.contains("tabular-scoring"), "the spec's title is shown: {html:.2000}");
}
