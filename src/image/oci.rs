//! One tar that `docker load`, `podman load` and balenaEngine accept: an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) with the
//! legacy `manifest.json` beside it, as `docker save` writes since Engine 25.
//!
//! Reproducible by construction: entries sorted, mtime fixed, owners 0,
//! JSON with sorted keys, the layer gzipped with no name and no time in its
//! header (its digest names the compressed blob; the config's `diff_ids`
//! the tar inside, as the OCI image spec has it). The same inputs give the
//! same bytes, so the tar's sha256 names the image. Memory stays flat:
//! files stream through hashing writers into a temporary layer file, then
//! through the compressor, then into the output. Compressed, the image is
//! less than half its size (docs/performance.md, "Footprint").

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::cid::CidBuilder;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image path {0:?} must be relative, without `..`")]
    BadPath(String),
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// What goes into the image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `repository:tag`.
    pub name: String,
    pub architecture: String,
    /// Path inside the image (relative, `/`-separated) → (content, mode).
    pub files: BTreeMap<String, (Content, u32)>,
    /// Empty directories to create (parents of files are added anyway).
    pub dirs: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub exposed_ports: Vec<String>,
    pub working_dir: String,
    /// Seconds since the Unix epoch for `created` and every mtime.
    pub epoch: u64,
}

/// The written image and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged {
    /// `sha256:<hex>` of the whole tar: the image's identity in contracts.
    pub digest: String,
    pub size: u64,
    /// The tar's IPFS CIDv1 (kubo defaults).
    pub cid: String,
    /// `sha256:<hex>` of the OCI manifest (what engines call the image digest).
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config (what engines call the image id).
    pub config_digest: String,
}

/// A writer that hashes (sha256 and, optionally, the CID) what passes.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    cid: Option<CidBuilder>,
    len: u64,
}

impl<W> Hashing<W> {
    /// `inner`, hashed from its first byte (its CID too when `cid`).
    fn new(inner: W, cid: bool) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
            cid: cid.then(CidBuilder::new),
            len: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        if let Some(c) = &mut self.cid {
            c.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

fn header(path: &str, size: u64, mode: u32, dir: bool, epoch: u64) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(epoch);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_cksum();
    Ok(h)
}

fn check(path: &str) -> Result<(), ImageError> {
    if path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|c| c == ".." || c.is_empty())
    {
        return Err(ImageError::BadPath(path.into()));
    }
    Ok(())
}

/// The layer, in one pass: its tar streams through a hash (the diff id,
/// what the image's config names) into gzip (deflate level 6, no file name,
/// mtime 0: the same tar gives the same bytes) and through a second hash
/// (the blob's digest) into `out`. Returns the diff id's and the blob's
/// sha256 and the blob's size. Only the compressed layer touches the disk.
fn write_layer(spec: &ImageSpec, out: &Path) -> Result<(String, String, u64), ImageError> {
    let mut dirs: std::collections::BTreeSet<String> = spec.dirs.iter().cloned().collect();
    for p in spec.files.keys().chain(&spec.dirs) {
        check(p)?;
        let mut parts: Vec<&str> = p.split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
    }
    let mut entries: BTreeMap<String, Option<&(Content, u32)>> =
        dirs.into_iter().map(|d| (format!("{d}/"), None)).collect();
    for (p, c) in &spec.files {
        entries.insert(p.clone(), Some(c));
    }
    let file = File::create(out).map_err(io(out))?;
    let blob = Hashing::new(BufWriter::new(file), false);
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(blob, flate2::Compression::default());
    let mut diff = Hashing::new(gz, false);
    append_entries(&mut diff, &entries, spec.epoch, out)?;
    let Hashing { inner: gz, sha, .. } = diff;
    let mut blob = gz.finish().map_err(io(out))?;
    blob.flush().map_err(io(out))?;
    Ok((
        hex::encode(sha.finalize()),
        hex::encode(blob.sha.finalize()),
        blob.len,
    ))
}

/// A tar entry: a directory (`None`), or a file's content and mode.
type Entries<'a> = BTreeMap<String, Option<&'a (Content, u32)>>;

/// Write `entries` in order as a tar at `out`, hashing it as it goes (and
/// computing its CID when `cid`).
fn write_tar(
    out: &Path,
    entries: &Entries<'_>,
    epoch: u64,
    cid: bool,
) -> Result<Hashing<BufWriter<File>>, ImageError> {
    let file = File::create(out).map_err(io(out))?;
    let mut w = Hashing::new(BufWriter::new(file), cid);
    append_entries(&mut w, entries, epoch, out)?;
    w.flush().map_err(io(out))?;
    Ok(w)
}

/// Write `entries` in order as a tar into `w` (`out` names it in errors).
fn append_entries(
    w: &mut impl Write,
    entries: &Entries<'_>,
    epoch: u64,
    out: &Path,
) -> Result<(), ImageError> {
    {
        let mut b = tar::Builder::new(w);
        for (path, entry) in entries {
            match entry {
                None => {
                    let h = header(path, 0, 0o755, true, epoch).map_err(io(out))?;
                    b.append(&h, std::io::empty()).map_err(io(out))?;
                }
                Some((Content::Bytes(bytes), mode)) => {
                    let h =
                        header(path, bytes.len() as u64, *mode, false, epoch).map_err(io(out))?;
                    b.append(&h, &bytes[..]).map_err(io(out))?;
                }
                Some((Content::File(src), mode)) => {
                    let f = File::open(src).map_err(io(src))?;
                    let len = f.metadata().map_err(io(src))?.len();
                    let h = header(path, len, *mode, false, epoch).map_err(io(out))?;
                    // `take` guards against a file growing while it is read.
                    b.append(&h, f.take(len)).map_err(io(src))?;
                }
            }
        }
        b.finish().map_err(io(out))?;
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Write the image `spec` describes to `out` (atomically: a temp file beside
/// it, renamed once complete).
pub fn write_image(spec: &ImageSpec, out: &Path) -> Result<Packaged, ImageError> {
    let layer_path = out.with_extension("layer.gz.tmp");
    let written = write_layer(spec, &layer_path);
    if written.is_err() {
        let _ = std::fs::remove_file(&layer_path);
    }
    let (diff_hex, layer_hex, layer_size) = written?;
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(spec.epoch),
    )
    .to_string();
    let ports: serde_json::Map<String, serde_json::Value> = spec
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": spec.architecture, "os": "linux", "created": created,
        "config": {"Entrypoint": spec.entrypoint, "Cmd": spec.cmd, "Env": spec.env,
                   "ExposedPorts": ports, "WorkingDir": spec.working_dir},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_hex}")]},
        "history": [{"created": created, "created_by": "device-lorawan package"}],
    }))
    .expect("json");
    let config_hex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": LAYER, "digest": format!("sha256:{layer_hex}"), "size": layer_size}],
    }))
    .expect("json");
    let manifest_hex = sha256_hex(&manifest);
    let tag = spec.name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": format!("sha256:{manifest_hex}"), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": format!("docker.io/library/{}", spec.name),
                            "org.opencontainers.image.ref.name": tag}}],
    }))
    .expect("json");
    let legacy = serde_json::to_vec(&json!([{
        "Config": format!("blobs/sha256/{config_hex}"), "RepoTags": [spec.name],
        "Layers": [format!("blobs/sha256/{layer_hex}")],
    }]))
    .expect("json");
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();

    let blobs = [
        (config_hex.clone(), Content::Bytes(config)),
        (layer_hex, Content::File(layer_path.clone())),
        (manifest_hex.clone(), Content::Bytes(manifest)),
    ]
    .map(|(hex, c)| (format!("blobs/sha256/{hex}"), (c, 0o644)));
    let files = [
        ("index.json".to_string(), (Content::Bytes(index), 0o644)),
        ("manifest.json".to_string(), (Content::Bytes(legacy), 0o644)),
        ("oci-layout".to_string(), (Content::Bytes(layout), 0o644)),
    ];
    let mut entries: Entries<'_> = ["blobs/", "blobs/sha256/"]
        .map(|d| (d.to_string(), None))
        .into_iter()
        .collect();
    for (path, c) in blobs.iter().chain(&files) {
        entries.insert(path.clone(), Some(c));
    }
    let tmp = out.with_extension("tmp");
    let w = write_tar(&tmp, &entries, spec.epoch, true)?;
    let Hashing {
        inner,
        sha,
        cid,
        len: size,
    } = w;
    // Durable before it is renamed into place.
    inner
        .into_inner()
        .map_err(|e| io(&tmp)(e.into_error()))?
        .sync_all()
        .map_err(io(&tmp))?;
    let (sha, cid) = (sha.finalize(), cid.expect("set").finish());
    let _ = std::fs::remove_file(&layer_path);
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(Packaged {
        digest: format!("sha256:{}", hex::encode(sha)),
        size,
        cid: cid.to_string(),
        manifest_digest: format!("sha256:{manifest_hex}"),
        config_digest: format!("sha256:{config_hex}"),
    })
}
