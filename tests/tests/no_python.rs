//! The platform is Rust, its buildpacks shell: no Python program is part of Ouro outside the
//! sample apps (`tests/apps/`) and the buildpacks that need one (the Python buildpack's helpers
//! run on the Python it installs). The builder, the add-on providers and the benchmarks' helper
//! once were Python; this keeps them from coming back unnoticed.

use std::path::Path;
use std::process::Command;

#[test]
fn no_python_program_outside_the_sample_apps_and_the_buildpacks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
    let listed = Command::new("git").args(["ls-files", "-z"]).current_dir(root).output().expect("git ls-files");
    assert!(listed.status.success(), "git ls-files: {}", String::from_utf8_lossy(&listed.stderr));
    let files: Vec<String> = listed
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(files.iter().any(|f| f == "Cargo.toml"), "the listing is of this repository: {files:?}");
    let python: Vec<&String> = files
        .iter()
        .filter(|f| !f.starts_with("tests/apps/") && !f.starts_with("buildpacks/"))
        .filter(|f| {
            f.ends_with(".py") || {
                let head = std::fs::read(root.join(f.as_str())).map(|b| b.into_iter().take(64).collect::<Vec<u8>>());
                head.is_ok_and(|head| {
                    head.starts_with(b"#!")
                        && String::from_utf8_lossy(&head).lines().next().is_some_and(|l| l.contains("python"))
                })
            }
        })
        .collect();
    assert!(python.is_empty(), "Python programs in the platform: {python:?}");
}
