//! A slug as an image layer: the slug's tar.gz rewritten into a layer tar (every entry under
//! `app/`, owned by the dyno user, plus the mount points `/data` and `/cache`), and the
//! `docker load` archive that puts it on top of the stack's layers. Docker reuses layers it
//! already has (the stack's, by chain id) and only applies the new one, which takes a fraction
//! of a second, where committing a container diffs the whole file system (seconds on
//! fuse-overlayfs) and ran the slug's content through a root container. Pure: bytes in, bytes
//! out, streamed (a slug may unpack to gigabytes; memory stays bounded).

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

const DYNO_ID: u64 = 1000;

/// Where volumes mount (`ouro_types::MOUNT_PATHS`): directories of the image owned by the dyno
/// user, so that Docker gives a new volume mounted there the same owner when it first mounts
/// it (it copies the image's directory into an empty volume). No root helper has to chown it.
const MOUNT_POINTS: [&str; 2] = ["data", "cache"];

/// Writes the layer tar of a slug tar.gz to `out` and returns its diff id (`sha256:<hex>` of
/// the tar). Refuses what a layer must not hold (an entry outside `app/`, a whiteout, a
/// special file), with a one-line reason.
pub fn write_slug_layer(slug_tar_gz: impl Read, out: impl Write) -> Result<String, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(slug_tar_gz));
    let mut layer = tar::Builder::new(Hashing { inner: out, hasher: Sha256::new() });
    layer.mode(tar::HeaderMode::Complete);
    let mut has_app = false;
    for entry in archive.entries().map_err(|e| format!("not a tar.gz: {e}"))? {
        let mut entry = entry.map_err(|e| format!("damaged slug: {e}"))?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let raw = entry.path().map_err(|e| format!("damaged slug: {e}"))?.into_owned();
        let path: std::path::PathBuf =
            raw.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
        if path.as_os_str().is_empty() {
            continue;
        }
        if let Some(reason) = ouro_types::slug_entry_refused(&path) {
            return Err(format!("entry `{}` {reason}", raw.display()));
        }
        has_app |= path.as_os_str() == "app";
        let mut header = entry.header().clone();
        header.set_uid(DYNO_ID);
        header.set_gid(DYNO_ID);
        let _ = header.set_username("");
        let _ = header.set_groupname("");
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name().map_err(|e| format!("damaged slug: {e}"))?;
            let target = target.ok_or_else(|| format!("link `{}` has no target", raw.display()))?.into_owned();
            // A hard link names another entry of the layer: the same `./` clean-up applies.
            let target: std::path::PathBuf = if kind.is_hard_link() {
                target.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
            } else {
                target
            };
            layer.append_link(&mut header, &path, &target).map_err(|e| format!("writing the layer: {e}"))?;
        } else if kind.is_file() || kind.is_dir() {
            layer.append_data(&mut header, &path, &mut entry).map_err(|e| format!("writing the layer: {e}"))?;
        } else {
            return Err(format!("entry `{}` is not a file, directory or link", raw.display()));
        }
    }
    // /app stays the dyno user's even when the slug lists only its contents.
    let directories = MOUNT_POINTS.iter().copied().chain((!has_app).then_some("app"));
    for directory in directories {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(DYNO_ID);
        header.set_gid(DYNO_ID);
        header.set_size(0);
        layer.append_data(&mut header, directory, std::io::empty()).map_err(|e| format!("writing the layer: {e}"))?;
    }
    let hashing = layer.into_inner().map_err(|e| format!("writing the layer: {e}"))?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What the image runs with, besides its layers.
pub struct ImageConfig<'a> {
    pub architecture: &'a str,
    pub env: Vec<String>,
    pub user: &'a str,
    pub working_dir: &'a str,
    /// Sorted, so that the same stack and slug make the same config, hence the same image id.
    pub labels: std::collections::BTreeMap<String, String>,
    /// When the image is made (RFC 3339): what the engine lists as its creation time, by which
    /// slug images nothing needs are collected only once old enough (see `runtime.rs`). On a
    /// swarm, the stack's own time instead, so that every node makes the same image id.
    pub created: String,
}

/// Writes a `docker load` archive of image `tag` to `out`: the base layers (by diff id, not
/// included: Docker must have them) and the layer `layer` (`layer_len` bytes) on top.
pub fn write_load_archive(
    out: impl Write,
    tag: &str,
    base_layers: &[String],
    layer: impl Read,
    layer_len: u64,
    diff_id: &str,
    config: &ImageConfig,
) -> std::io::Result<()> {
    let mut diff_ids: Vec<&str> = base_layers.iter().map(String::as_str).collect();
    diff_ids.push(diff_id);
    let image = serde_json::json!({
        "architecture": config.architecture,
        "created": config.created,
        "os": "linux",
        "config": {
            "User": config.user,
            "WorkingDir": config.working_dir,
            "Env": config.env,
            "Cmd": ["/bin/bash"],
            "Labels": config.labels,
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let mut layers: Vec<String> = (0..base_layers.len()).map(|i| format!("base{i}/layer.tar")).collect();
    layers.push("slug/layer.tar".into());
    let manifest = serde_json::json!([{ "Config": "config.json", "RepoTags": [tag], "Layers": layers }]);
    let mut archive = tar::Builder::new(out);
    let header = |len: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header
    };
    for (name, data) in [("manifest.json", manifest.to_string()), ("config.json", image.to_string())] {
        archive.append_data(&mut header(data.len() as u64), name, data.as_bytes())?;
    }
    archive.append_data(&mut header(layer_len), "slug/layer.tar", layer.take(layer_len))?;
    archive.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug_layer(input: &[u8]) -> Result<(Vec<u8>, String), String> {
        let mut layer = Vec::new();
        let diff_id = write_slug_layer(input, &mut layer)?;
        Ok((layer, diff_id))
    }

    fn slug(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, kind, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_uid(0);
            if kind.is_symlink() {
                h.set_size(0);
                b.append_link(&mut h, path, content).unwrap();
            } else {
                h.set_size(content.len() as u64);
                b.append_data(&mut h, path, content.as_bytes()).unwrap();
            }
        }
        let mut gz = b.into_inner().unwrap();
        gz.flush().unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn entries_are_under_app_and_owned_by_the_dyno_user() {
        let input = slug(&[
            ("./app/", tar::EntryType::Directory, ""),
            ("./app/web.py", tar::EntryType::Regular, "print(1)"),
            ("./app/.venv/bin/python", tar::EntryType::Symlink, "/usr/bin/python3"),
        ]);
        let (layer, diff_id) = slug_layer(&input).unwrap();
        assert_eq!(diff_id, format!("sha256:{}", hex::encode(Sha256::digest(&layer))));
        let mut archive = tar::Archive::new(&layer[..]);
        let seen: Vec<(String, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().uid().unwrap(), e.header().gid().unwrap())
            })
            .collect();
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["app", "app/web.py", "app/.venv/bin/python", "data", "cache"]);
        assert!(seen.iter().all(|s| s.1 == 1000 && s.2 == 1000), "{seen:?}");
    }

    #[test]
    fn refuses_what_a_layer_must_not_hold() {
        let outside = slug(&[("./etc/passwd", tar::EntryType::Regular, "x")]);
        assert!(slug_layer(&outside).unwrap_err().contains("not under app/"));
        let whiteout = slug(&[("app/.wh.web.py", tar::EntryType::Regular, "")]);
        assert!(slug_layer(&whiteout).unwrap_err().contains("whiteout"));
        assert!(slug_layer(b"not gzip").is_err());
    }

    #[test]
    fn the_archive_names_the_base_layers_and_the_new_one() {
        let config = ImageConfig {
            architecture: "amd64",
            env: vec!["HOME=/app".into()],
            user: "1000:1000",
            working_dir: "/app",
            labels: Default::default(),
            created: "2026-12-07T07:00:00Z".into(),
        };
        let mut archive = Vec::new();
        let layer = &b"LAYER, and what follows is not the layer's"[..];
        write_load_archive(&mut archive, "ouro/slug:ab", &["sha256:base".into()], layer, 5, "sha256:new", &config)
            .unwrap();
        let mut files = std::collections::BTreeMap::new();
        for e in tar::Archive::new(&archive[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            files.insert(e.path().unwrap().to_string_lossy().into_owned(), text);
        }
        assert_eq!(files["slug/layer.tar"], "LAYER");
        let image: serde_json::Value = serde_json::from_str(&files["config.json"]).unwrap();
        assert_eq!(image["rootfs"]["diff_ids"], serde_json::json!(["sha256:base", "sha256:new"]));
        assert_eq!(image["config"]["User"], "1000:1000");
        assert_eq!(image["created"], "2026-12-07T07:00:00Z", "the engine lists the image as made now, not in 1970");
        let manifest: serde_json::Value = serde_json::from_str(&files["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "ouro/slug:ab");
        assert_eq!(manifest[0]["Layers"], serde_json::json!(["base0/layer.tar", "slug/layer.tar"]));
    }
}
