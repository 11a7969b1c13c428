//! Embeds the shipped buildpacks (`buildpacks/`) into the API binary, so the API can make the
//! builder's slug on its own (with the `ouro-build` program beside the API's binary, see
//! `src/builder_app.rs`). Generates `$OUT_DIR/embedded_files.rs` with `BUILDPACK_FILES`:
//! `(path, mode, bytes)`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the api crate sits in the workspace").to_path_buf();
    let mut out = String::new();
    // (constant, [(source directory, its path inside the archive)])
    let sets: [(&str, Vec<(PathBuf, &str)>); 1] = [("BUILDPACK_FILES", vec![(root.join("buildpacks"), "buildpacks")])];
    for (name, dirs) in sets {
        let mut files = Vec::new();
        for (dir, into) in dirs {
            println!("cargo:rerun-if-changed={}", dir.display());
            collect(&dir, &dir, into, &mut files);
        }
        files.sort();
        out.push_str(&format!(
            "/// Embedded files: (path, unix mode, content).\npub const {name}: &[(&str, u32, &[u8])] = &[\n"
        ));
        for (path, mode, source) in &files {
            out.push_str(&format!("    ({path:?}, 0o{mode:o}, include_bytes!({:?})),\n", source.display().to_string()));
        }
        out.push_str("];\n");
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_files.rs");
    fs::write(dest, out).expect("write embedded_files.rs");
}

fn collect(base: &Path, dir: &Path, into: &str, files: &mut Vec<(String, u32, PathBuf)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).expect("metadata");
        if meta.is_dir() {
            collect(base, &path, into, files);
        } else if meta.is_file() {
            let relative = path.strip_prefix(base).expect("inside base").to_string_lossy().into_owned();
            let inside = if into.is_empty() { relative } else { format!("{into}/{relative}") };
            let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            files.push((inside, mode, path));
        }
        // Symlinks and special files are not part of a buildpack.
    }
}
