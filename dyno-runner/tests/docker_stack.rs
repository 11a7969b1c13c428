//! The stack image against a real Docker Engine (builds it on first run: a few minutes, needs root
//! and debootstrap), plus the recipe hashing, which needs nothing.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::{Config, CreateContainerOptions, LogsOptions, RemoveContainerOptions, WaitContainerOptions};
use futures_util::StreamExt as _;
use ouro_dyno_runner::stack::{
    self, PACKAGES, STACK_REPO, StackError, ensure_stack_image, recipe_hash, recipe_text, stack_tag, stack_tag_for,
};

#[test]
fn tag_is_stable_for_a_recipe_and_changes_with_it() {
    let recipe = recipe_text(PACKAGES);
    assert_eq!(recipe, recipe_text(PACKAGES), "recipe text is deterministic");
    assert_eq!(stack_tag_for(&recipe), stack_tag());
    assert_eq!(stack_tag(), stack_tag());

    let hash = recipe_hash(&recipe);
    assert_eq!(hash.len(), 12);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(stack_tag(), format!("{STACK_REPO}:trixie-{hash}"));

    // Another package changes the tag; comments, blank lines and order do not.
    let more = recipe_text(&format!("{PACKAGES}\njq\n"));
    assert_ne!(recipe_hash(&more), hash);
    let mut reordered: Vec<&str> = PACKAGES.lines().collect();
    reordered.reverse();
    let reordered = format!("# another comment\n\n{}", reordered.join("\n"));
    assert_eq!(recipe_hash(&recipe_text(&reordered)), hash);
    // Any change of the recipe text changes the hash.
    assert_ne!(recipe_hash(&format!("{recipe} ")), hash);
}

async fn docker() -> Docker {
    let docker = Docker::connect_with_local_defaults().expect("Docker client");
    docker.negotiate_version().await.expect("the Docker Engine answers")
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_override_image_is_a_clear_error() {
    let docker = docker().await;
    let err = stack::require_image(&docker, "ouro/does-not-exist:never").await.unwrap_err();
    assert!(matches!(err, StackError::ImageNotFound(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "image ouro/does-not-exist:never not found in the Docker Engine: build or load it there, or unset OURO_STACK_IMAGE"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_image_is_built_once_and_runs_dyno_commands() {
    let docker = docker().await;

    // Two callers at once: one builds (if needed), the other waits for it.
    let started = Instant::now();
    let (first, second) = tokio::join!(ensure_stack_image(&docker), ensure_stack_image(&docker));
    let tag = first.expect("stack image");
    assert_eq!(second.expect("stack image"), tag);
    eprintln!("ensure_stack_image: {tag} in {:?}", started.elapsed());
    if std::env::var_os(stack::STACK_IMAGE_ENV).is_none() {
        assert_eq!(tag, stack_tag());
    }
    let before = docker.inspect_image(&tag).await.expect("inspect stack image");

    // Again: cached, nothing rebuilt.
    let started = Instant::now();
    assert_eq!(ensure_stack_image(&docker).await.expect("cached stack image"), tag);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "cached lookup took {elapsed:?}");
    let after = docker.inspect_image(&tag).await.expect("inspect stack image");
    assert_eq!(after.id, before.id, "image was rebuilt");
    assert_eq!(after.created, before.created, "image was rebuilt");

    let script = r#"id -u; python3 -c "print(1+1)"; curl --version | head -1; test -s /etc/ssl/certs/ca-certificates.crt && echo ca-ok"#;
    let (exit, output) = run(&docker, &tag, script).await;
    assert_eq!(exit, 0, "output: {output}");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 4, "output: {output}");
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "2");
    assert!(lines[2].starts_with("curl "), "output: {output}");
    assert_eq!(lines[3], "ca-ok");
}

/// Runs `bash -c script` as `dyno` in a container of `image`; returns exit code and stdout+stderr.
/// The container is removed whatever happens.
async fn run(docker: &Docker, image: &str, script: &str) -> (i64, String) {
    let name = format!(
        "ouro-stack-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let config = Config {
        image: Some(image),
        user: Some("dyno"),
        cmd: Some(vec!["bash", "-c", script]),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    docker
        .create_container(Some(CreateContainerOptions { name: name.as_str(), platform: None }), config)
        .await
        .expect("create container");
    let result = async {
        docker.start_container::<String>(&name, None).await.map_err(|e| format!("start: {e}"))?;
        let mut wait = docker.wait_container(&name, None::<WaitContainerOptions<String>>);
        let exit = match wait.next().await {
            Some(Ok(response)) => response.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(format!("wait: {e}")),
            None => return Err("wait: no answer".to_owned()),
        };
        let options = LogsOptions::<String> { stdout: true, stderr: true, ..Default::default() };
        let mut logs = docker.logs(&name, Some(options));
        let mut output = String::new();
        while let Some(chunk) = logs.next().await {
            output.push_str(&chunk.map_err(|e| format!("logs: {e}"))?.to_string());
        }
        Ok((exit, output))
    }
    .await;
    let removed =
        docker.remove_container(&name, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
    let result = result.unwrap_or_else(|e| panic!("container {name}: {e}"));
    removed.unwrap_or_else(|e| panic!("remove container {name}: {e}"));
    result
}
