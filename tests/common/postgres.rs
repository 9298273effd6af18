//! Debian's PostgreSQL, started by the test: a fresh cluster in a
//! temporary directory on a free loopback port, stopped when dropped. As
//! root (CI) it runs as the `postgres` user the package makes (PostgreSQL
//! refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    as_root: bool,
}

/// Debian installs the server programs under /usr/lib/postgresql/<major>/bin.
fn bin_dir() -> Option<PathBuf> {
    let mut majors: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    majors.sort();
    majors.pop()
}

fn run(as_root: bool, bin: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let path = bin.join(program);
    let mut c = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    c.args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

impl Postgres {
    /// `None` (after a skip notice; a failure in CI) when PostgreSQL is not
    /// installed.
    pub fn start() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            super::skip::skip("PostgreSQL is not installed", "apt-get install postgresql");
            return None;
        };
        let as_root = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if as_root {
            std::fs::create_dir(&data).unwrap();
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster's directory");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let data_s = data.to_str().unwrap();
        let out = run(
            as_root,
            &bin,
            "initdb",
            &["-D", data_s, "-U", "market", "--auth=trust", "-E", "UTF8"],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let opts = format!("-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={data_s} -c fsync=off");
        let log = dir.path().join("postgres.log");
        let out = run(
            as_root,
            &bin,
            "pg_ctl",
            &[
                "-D",
                data_s,
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let out = run(
            as_root,
            &bin,
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "market",
                "market",
            ],
        );
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self {
            url: format!("postgres://market@127.0.0.1:{port}/market"),
            bin,
            data,
            _dir: dir,
            as_root,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = run(
            self.as_root,
            &self.bin,
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}
