//! Issue 15's collection of what nothing needs, on the Docker Engine: slug images of releases
//! no longer desired go (a rollback makes the image again). Its own test binary: its runner
//! collects often, and other tests' images must not be in its way.

use std::time::Duration;

use ouro_tests::json;
use ouro_tests::platform::{Platform, runner_env};

const BOOT: Duration = Duration::from_secs(120);

/// The image tag the runner gives the slug of release `version` of `app`.
fn image_of(platform: &Platform, app: &str, version: i64) -> String {
    let release = platform.api.get(&format!("/apps/{app}/releases/{version}"));
    let slug = release.body["slug"]["id"].as_str().expect("a slug").to_string();
    let slug = platform.api.get(&format!("/apps/{app}/slugs/{slug}"));
    let checksum = slug.body["checksum"].as_str().expect("a checksum");
    format!("ouro/slug:2-{}", checksum.trim_start_matches("SHA256:").to_ascii_lowercase())
}

fn exists(platform: &Platform, image: &str) -> bool {
    platform.block_on(platform.docker.inspect_image(image)).is_ok()
}

/// Checked to fail on the code before collection (there the first release's image stayed, and
/// the rollback did not run: the runner thought it still had the image), and on images that
/// said they were made in 1970 (then an unused image of any age went).
#[test]
fn slug_images_of_old_releases_are_collected_and_made_again_on_rollback() {
    let mut env = runner_env();
    // Collect every second, images older than 5 s (so one being made for a start is safe).
    env.extend([("OURO_IMAGE_GC_SECONDS", "1"), ("OURO_IMAGE_GC_AGE_SECONDS", "5")]);
    let platform = Platform::start_with(&env);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
    let deploy = |content: &str| {
        std::fs::write(dir.path().join("app/VERSION"), content).expect("write");
        json!({"worker": "exec sleep 600"})
    };
    let v1 = platform.create_and_deploy("keeper", dir.path(), deploy("one\n"));
    platform.scale("keeper", "worker", 1);
    platform.wait_until(BOOT, "v1 runs", || platform.up("keeper", "worker", v1) == 1);
    let first = image_of(&platform, "keeper", v1);
    assert!(exists(&platform, &first), "{first}");
    let v2 = platform.deploy("keeper", dir.path(), deploy("two\n"));
    platform.wait_until(BOOT, "v2 runs", || platform.up("keeper", "worker", v2) == 1);
    let second = image_of(&platform, "keeper", v2);
    assert_ne!(first, second);
    platform.wait_until(Duration::from_secs(60), "v1's image is collected", || !exists(&platform, &first));
    assert!(exists(&platform, &second), "the current release's image stays");
    // The engine lists a slug image as made when it was made (not in 1970), or every unused
    // one would be old enough to go, however young: one made for a start about to happen, one
    // another installation on this engine wants.
    let created =
        platform.block_on(platform.docker.inspect_image(&second)).expect("v2's image").created.unwrap_or_default();
    assert!(created.as_str() >= "2026-", "v2's image says it was made at {created:?}");

    // A rollback to v1 makes its image again from the slug.
    let rollback = platform.api.post("/apps/keeper/releases", json!({"release": v1}));
    assert_eq!(rollback.status, 201, "{:?}", rollback.body);
    let v3 = rollback.body["version"].as_i64().expect("version");
    platform.wait_until(BOOT, "the rollback runs", || platform.up("keeper", "worker", v3) == 1);
    assert!(exists(&platform, &first), "made again");
}
