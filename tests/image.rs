//! `device-lorawan package`, checked by the real tools: the same inputs give
//! the same bytes; skopeo reads both the OCI layout and the docker-save
//! manifest; podman loads the tar and runs the image; no secret is inside.

mod common;

use std::process::Command;

const SECRET: &str = "bus-password-that-must-not-travel";

fn package(out: &std::path::Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["package", "--out"])
        .arg(out)
        .current_dir(common::repo_path(""))
        .env("SERVICE_DATADIR", out.parent().unwrap().join("data"))
        .env("EDGEX_MESSAGEBUS_PASSWORD", SECRET)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn field<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn run(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The image's layer blob and the diff_id its config names.
fn layer_of(image: &[u8]) -> (Vec<u8>, String) {
    let mut files = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(image);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(path, data);
    }
    let blob = |digest: &str| files[&format!("blobs/sha256/{}", &digest[7..])].clone();
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    (
        blob(layer["digest"].as_str().unwrap()),
        config["rootfs"]["diff_ids"][0]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[test]
fn package_is_reproducible_valid_and_runs_in_podman() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let report = package(&a);
    assert_eq!(package(&b), report.replace("a.tar", "b.tar"));
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap(), "byte-identical");
    use sha2::Digest;
    assert_eq!(
        field(&report, "digest"),
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
    );
    assert!(field(&report, "cid").starts_with("bafybei"));
    // And kept by its digest in the local store.
    let stored = std::fs::read(field(&report, "stored")).unwrap();
    assert_eq!(stored, bytes);
    assert!(field(&report, "stored").ends_with(&field(&report, "digest")[7..]));
    // The layer is gzipped: its digest names the compressed blob, the
    // config's diff_id the tar inside; look for the secret in the tar.
    let (layer, diff_id) = layer_of(&bytes);
    assert_eq!(&layer[..2], &[0x1f, 0x8b], "a gzip layer");
    let mut inner = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut inner).unwrap();
    assert_eq!(
        diff_id,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&inner)))
    );
    assert!(
        inner.len() > layer.len(),
        "compressed: {} of {}",
        layer.len(),
        inner.len()
    );
    for haystack in [&bytes, &inner] {
        assert!(
            !haystack
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes()),
            "a secret went into the image"
        );
    }

    if !common::require_engine() {
        return;
    }
    let tar = a.to_str().unwrap();
    for transport in ["oci-archive", "docker-archive"] {
        let v: serde_json::Value =
            serde_json::from_str(&run("skopeo", &["inspect", &format!("{transport}:{tar}")]))
                .unwrap();
        assert_eq!(v["Os"], "linux", "{transport}");
        assert_eq!(v["Layers"].as_array().unwrap().len(), 1, "{transport}");
    }
    let loaded = run("podman", &["load", "-i", tar]);
    assert!(loaded.contains("device-lorawan:0.1.0"), "{loaded}");
    let id = run(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "device-lorawan:0.1.0",
        ],
    );
    assert_eq!(
        format!("sha256:{}", id.trim()),
        field(&report, "config"),
        "the image id is our config digest"
    );
    let version = run(
        "podman",
        &[
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "device-lorawan:0.1.0",
            "--version",
        ],
    );
    assert_eq!(
        version.trim(),
        format!("device-lorawan {}", env!("CARGO_PKG_VERSION"))
    );
}
