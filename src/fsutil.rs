//! Small durable-file helpers shared by the stores that rewrite a whole file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replace `path` with `bytes` atomically: a temp file beside it (created
/// with `mode`), fsync, rename, fsync of the directory. A crash leaves the
/// old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Copies of a damaged file kept per file; older ones are removed.
const KEPT_ASIDE: usize = 3;

/// Keep a copy of `path` as it was before a repair drops what did not
/// verify (`<file>.damaged-<unix seconds>`, owner-only), for inspection;
/// at most `KEPT_ASIDE` per file, the oldest removed. Returns the copy.
pub fn keep_aside(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file")
        .to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = format!("{name}.damaged-");
    let mut copy = dir.join(format!("{prefix}{secs}"));
    let mut n = 1;
    while copy.exists() {
        copy = dir.join(format!("{prefix}{secs}.{n}"));
        n += 1;
    }
    let bytes = std::fs::read(path)?;
    write_atomic(&copy, &bytes, 0o600)?;
    let mut kept: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|f| f.starts_with(&prefix))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    kept.sort();
    while kept.len() > KEPT_ASIDE {
        let (_, old) = kept.remove(0);
        if old != copy {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_copies_are_kept_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("fcnt.log");
        std::fs::write(&f, b"torn").unwrap();
        let copies: Vec<_> = (0..5).map(|_| keep_aside(&f).unwrap()).collect();
        assert_eq!(std::fs::read(&copies[4]).unwrap(), b"torn");
        let left = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .starts_with("fcnt.log.damaged-")
            })
            .count();
        assert_eq!(left, KEPT_ASIDE);
        assert!(copies[4].exists(), "the newest copy stays");
    }
}

/// The YAML and JSON files of `dir` (`*.yaml`, `*.yml`, `*.json`), sorted:
/// how EdgeX's definition directories (devices, provision watchers) are read.
pub fn definition_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// A parser's error message with the values it quotes taken out: serde
/// quotes a refused scalar (`invalid type: string "…"`), and in the devices
/// file or the configuration that scalar may be a key or a password. Every
/// double-quoted part becomes `"…"`, and any run of 32 or more hex digits
/// (a key written where a name was expected) `<redacted>`.
pub fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            // Skip to the closing quote (escapes included).
            while let Some(q) = chars.next() {
                match q {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            out.push_str("\"…\"");
        } else {
            out.push(c);
        }
    }
    let mut redacted = String::with_capacity(out.len());
    let mut run = String::new();
    for c in out.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 32 {
            redacted.push_str("<redacted>");
        } else {
            redacted.push_str(&run);
        }
        run.clear();
        redacted.push(c);
    }
    redacted.pop();
    redacted
}

#[cfg(test)]
mod redact_tests {
    use super::redact_values;

    #[test]
    fn quoted_values_and_key_like_runs_are_taken_out() {
        let m = r#"at `.`: invalid type: string "appSKey; \"000102030405060708090a0b0c0d0e0f\" x", expected struct DevicesFile at line 4 column 5"#;
        let r = redact_values(m);
        assert_eq!(
            r,
            "at `.`: invalid type: string \"…\", expected struct DevicesFile at line 4 column 5"
        );
        let r = redact_values("unknown field `000102030405060708090a0b0c0d0e0f`, expected `name`");
        assert_eq!(r, "unknown field `<redacted>`, expected `name`");
        assert_eq!(redact_values("line 26011bda"), "line 26011bda");
    }
}

/// The wall clock in Unix milliseconds (fractional), as JavaScript's
/// `Date` takes it.
pub fn unix_ms_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Hand the allocator's free memory back to the system (after a burst:
/// glibc keeps freed heap otherwise, and RSS would stay at the burst's peak).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the heap to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}
