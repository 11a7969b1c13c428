//! Issue 15's collection of what nothing needs, in the API: slug blobs of all but an app's
//! last ten releases, and whatever a deleted app left, against the real `ouro-api` binary on
//! both backends.

use std::time::{Duration, Instant};

use ouro_tests::{Api, Backend, json, make_slug};

ouro_tests::on_both_backends!(blobs_of_old_releases_and_deleted_apps_are_collected);

/// Deploys a slug holding `content`; returns (release version, blob path on disk).
fn deploy(api: &Api, app: &str, content: &str) -> (i64, std::path::PathBuf) {
    let slug = api.post(&format!("/apps/{app}/slugs"), json!({"process_types": {"web": "serve"}}));
    let id = slug.body["id"].as_str().expect("a slug").to_string();
    let blob = format!("/apps/{app}/slugs/{id}/blob");
    let (status, _) =
        api.raw("PUT", &blob, Some(&api.token), Some(&make_slug(&[("app/serve", content)])), "application/gzip");
    assert_eq!(status, 200);
    let release = api.post(&format!("/apps/{app}/releases"), json!({"slug": id}));
    assert_eq!(release.status, 201, "{:?}", release.body);
    let checksum = api.get(&format!("/apps/{app}/slugs/{id}")).body["checksum"].as_str().unwrap().to_string();
    let hex = checksum.trim_start_matches("SHA256:").to_string();
    let path = api.data_dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
    (release.body["version"].as_i64().unwrap(), path)
}

/// With collection every second (blobs younger than 3 s spared): of 12 deploys, the first
/// two slugs' blobs go, the last ten stay; rolling back to a collected release says why and
/// changes nothing, to a kept one works; a deleted app's blob goes. Checked to fail on the
/// code before collection: there every blob stayed.
fn blobs_of_old_releases_and_deleted_apps_are_collected(backend: Backend) {
    let api = Api::start_with(backend, &[("OURO_BLOB_GC_SECONDS", "1"), ("OURO_BLOB_GC_GRACE_SECONDS", "3")]);
    assert_eq!(api.post("/apps", json!({"name": "hoard"})).status, 201);
    assert_eq!(api.post("/apps", json!({"name": "gone"})).status, 201);
    let deployed: Vec<(i64, std::path::PathBuf)> = (0..12).map(|i| deploy(&api, "hoard", &format!("v{i}"))).collect();
    let (_, gone_blob) = deploy(&api, "gone", "an app about to go");
    assert_eq!(api.delete("/apps/gone").status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while deployed[..2].iter().any(|(_, path)| path.exists()) || gone_blob.exists() {
        assert!(Instant::now() < deadline, "old blobs still there after 30 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(deployed[2..].iter().all(|(_, path)| path.exists()), "the last ten releases keep their slugs");

    let before = api.get("/apps/hoard").body["current_release"].clone();
    let refused = api.post("/apps/hoard/releases", json!({"release": deployed[0].0}));
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("slug was collected") && message.contains("last 10 releases"), "{message}");
    assert_eq!(api.get("/apps/hoard").body["current_release"], before, "nothing changed");
    let rollback = api.post("/apps/hoard/releases", json!({"release": deployed[2].0}));
    assert_eq!(rollback.status, 201, "{:?}", rollback.body);
}
