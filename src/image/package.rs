//! `device-lorawan package`: the running service as a container image. Its
//! own executable (and, unless static, the loader and libraries it needs),
//! the profiles, and its configuration with every secret blanked and paths
//! set for the image. Never the devices file or any key: sessions travel
//! to a provider separately, under the contract.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::elf::{runtime_files, ElfError};
use super::oci::{write_image, Content, ImageError, ImageSpec, Packaged};
use crate::config::Config;

/// Where things live inside the image.
pub const BIN: &str = "/usr/local/bin/device-lorawan";
pub const CONFIG: &str = "/etc/device-lorawan/configuration.yaml";
pub const PROFILES: &str = "/etc/device-lorawan/profiles";
pub const DATA: &str = "/var/lib/device-lorawan";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("finding this executable: {0}")]
    CurrentExe(std::io::Error),
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("profiles directory {path}: {source}")]
    Profiles {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The configuration the image carries: `config` with secrets blanked and
/// paths inside the image.
pub fn image_config(config: &Config) -> String {
    let mut c: Config =
        serde_yaml_ng::from_str(&config.redacted_yaml()).expect("redacted config reads back");
    c.service.data_dir = DATA.into();
    c.devices.file = format!("{DATA}/devices.yaml").into();
    c.devices.profiles_dir = PROFILES.into();
    c.service.api_bind.set_ip([0, 0, 0, 0].into());
    c.readings.json_lines = readings_in_image(&config.readings.json_lines);
    format!(
        "# Packaged by `device-lorawan package`: secrets blanked; the devices\n\
         # file and session keys come with a handover contract, never in the image.\n{}",
        serde_yaml_ng::to_string(&c).expect("config serialises")
    )
}

/// `Readings.JsonLines` inside the image: standard output stays so, a file
/// moves into the data directory (the host's path means nothing there).
pub fn readings_in_image(json_lines: &str) -> String {
    match json_lines {
        "-" | "" => json_lines.to_owned(),
        _ => format!("{DATA}/readings.jsonl"),
    }
}

/// The image spec for executable `exe` serving with `config`.
pub fn spec(exe: &Path, config: &Config, epoch: u64) -> Result<ImageSpec, PackageError> {
    let (architecture, libs) = runtime_files(exe)?;
    let mut files: BTreeMap<String, (Content, u32)> = BTreeMap::new();
    let rel = |p: &str| p.trim_start_matches('/').to_string();
    files.insert(rel(BIN), (Content::File(exe.to_owned()), 0o755));
    let mut lib_dirs: Vec<String> = Vec::new();
    for l in &libs {
        let p = l.to_string_lossy().into_owned();
        if let Some(d) = l.parent().map(|d| d.to_string_lossy().into_owned()) {
            if !lib_dirs.contains(&d) {
                lib_dirs.push(d);
            }
        }
        files.insert(rel(&p), (Content::File(l.clone()), 0o755));
    }
    files.insert(
        rel(CONFIG),
        (Content::Bytes(image_config(config).into_bytes()), 0o644),
    );
    let dir = &config.devices.profiles_dir;
    let profiles =
        crate::codec::profile::yaml_files(dir).map_err(|source| PackageError::Profiles {
            path: dir.clone(),
            source,
        })?;
    for p in profiles {
        let name = p
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        files.insert(
            rel(&format!("{PROFILES}/{name}")),
            (Content::File(p), 0o644),
        );
    }
    let mut env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_string()];
    if !lib_dirs.is_empty() {
        env.push(format!("LD_LIBRARY_PATH={}", lib_dirs.join(":")));
    }
    let api_port = config.service.api_bind.port();
    let udp_port = config.ingest.udp.bind.port();
    Ok(ImageSpec {
        name: format!("device-lorawan:{}", env!("CARGO_PKG_VERSION")),
        architecture: architecture.to_string(),
        files,
        dirs: vec![rel(DATA)],
        entrypoint: vec![BIN.into()],
        cmd: vec!["run".into(), "--config".into(), CONFIG.into()],
        env,
        exposed_ports: vec![format!("{api_port}/tcp"), format!("{udp_port}/udp")],
        working_dir: DATA.into(),
        epoch,
    })
}

/// `SOURCE_DATE_EPOCH` if set (the reproducible-builds convention), else 0.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Package the running executable with `config` into `out`.
pub fn package(config: &Config, out: &Path) -> Result<Packaged, PackageError> {
    let exe = std::env::current_exe().map_err(PackageError::CurrentExe)?;
    Ok(write_image(&spec(&exe, config, source_date_epoch())?, out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_config_has_no_secrets_and_image_paths() {
        let mut c = Config::default();
        c.ingest.mqtt.password = Some("hunter2".into());
        c.edgex.message_bus.password = Some("s3cret".into());
        let text = image_config(&c);
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
        let back: Config = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back.devices.profiles_dir, Path::new(PROFILES));
        assert_eq!(back.service.data_dir, Path::new(DATA));
    }
}
