//! What a dynamically linked executable needs at run time, read from its
//! ELF headers (no `ldd`, which a minimal image does not have): the
//! interpreter (`PT_INTERP`) and the `DT_NEEDED` libraries, transitively,
//! found where the dynamic loader looks for them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a 64-bit little-endian ELF file")]
    NotElf { path: PathBuf },
    #[error("{path}: truncated or inconsistent ELF headers")]
    Malformed { path: PathBuf },
    #[error("{library} (needed by {by}) is in none of {dirs:?}")]
    NotFound {
        library: String,
        by: PathBuf,
        dirs: Vec<PathBuf>,
    },
}

/// What one ELF file declares.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `e_machine` as an OCI architecture (`amd64`, `arm64`, `arm`, ...).
    pub architecture: &'static str,
    pub interpreter: Option<PathBuf>,
    pub needed: Vec<String>,
}

fn arch(machine: u16) -> &'static str {
    match machine {
        62 => "amd64",
        183 => "arm64",
        40 => "arm",
        243 => "riscv64",
        _ => "unknown",
    }
}

/// Read the program and dynamic headers of `bytes`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Dynamic, ElfError> {
    let bad = || ElfError::Malformed {
        path: path.to_owned(),
    };
    if bytes.len() < 64 || bytes[..4] != *b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err(ElfError::NotElf {
            path: path.to_owned(),
        });
    }
    // Every offset comes from the file: sums are checked, never wrapped.
    let field = |o: usize, n: usize| bytes.get(o..o.checked_add(n)?);
    let u16_at = |o: usize| field(o, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| field(o, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4")));
    let u64_at = |o: usize| field(o, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
    let plus = |a: usize, b: usize| a.checked_add(b).ok_or_else(bad);
    let machine = u16_at(0x12).ok_or_else(bad)?;
    let phoff = u64_at(0x20).ok_or_else(bad)? as usize;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    // (type, offset, vaddr, filesz) of each program header.
    let mut headers = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let h = phoff
            .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        headers.push((
            u32_at(h).ok_or_else(bad)?,
            u64_at(plus(h, 8)?).ok_or_else(bad)? as usize,
            u64_at(plus(h, 16)?).ok_or_else(bad)?,
            u64_at(plus(h, 32)?).ok_or_else(bad)? as usize,
        ));
    }
    let cstr = |at: usize| -> Option<String> {
        let rest = bytes.get(at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        String::from_utf8(rest[..end].to_vec()).ok()
    };
    let mut out = Dynamic {
        architecture: arch(machine),
        ..Default::default()
    };
    for &(kind, offset, _, _) in &headers {
        if kind == 3 {
            out.interpreter = Some(PathBuf::from(cstr(offset).ok_or_else(bad)?));
        }
    }
    let Some(&(_, dyn_off, _, dyn_size)) = headers.iter().find(|h| h.0 == 2) else {
        return Ok(out); // static
    };
    let mut strtab_vaddr = None;
    let mut needed_offsets = Vec::new();
    for e in (dyn_off..plus(dyn_off, dyn_size)?).step_by(16) {
        match (
            u64_at(e).ok_or_else(bad)?,
            u64_at(plus(e, 8)?).ok_or_else(bad)?,
        ) {
            (0, _) => break,
            (1, v) => needed_offsets.push(v as usize),
            (5, v) => strtab_vaddr = Some(v),
            _ => {}
        }
    }
    if needed_offsets.is_empty() {
        return Ok(out);
    }
    // The string table's file offset, through the PT_LOAD segment holding it.
    let vaddr = strtab_vaddr.ok_or_else(bad)?;
    let strtab = headers
        .iter()
        .find(|&&(kind, _, va, size)| {
            kind == 1 && vaddr >= va && va.checked_add(size as u64).is_some_and(|end| vaddr < end)
        })
        .and_then(|&(_, off, va, _)| off.checked_add(usize::try_from(vaddr - va).ok()?))
        .ok_or_else(bad)?;
    for n in needed_offsets {
        out.needed.push(cstr(plus(strtab, n)?).ok_or_else(bad)?);
    }
    Ok(out)
}

/// Where the loader looks, for the usual multiarch and plain layouts.
pub fn search_dirs(architecture: &str) -> Vec<PathBuf> {
    let triplet = match architecture {
        "amd64" => "x86_64-linux-gnu",
        "arm64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        _ => "",
    };
    let mut dirs = Vec::new();
    if !triplet.is_empty() {
        dirs.push(PathBuf::from(format!("/lib/{triplet}")));
        dirs.push(PathBuf::from(format!("/usr/lib/{triplet}")));
    }
    for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The files `exe` needs, interpreter first: `(architecture, paths)`.
/// An empty list means a static executable.
pub fn runtime_files(exe: &Path) -> Result<(&'static str, Vec<PathBuf>), ElfError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| ElfError::Io {
            path: p.to_owned(),
            source,
        })
    };
    let top = parse(exe, &read(exe)?)?;
    let dirs = search_dirs(top.architecture);
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut todo: Vec<(String, PathBuf)> = top
        .needed
        .iter()
        .map(|n| (n.clone(), exe.to_owned()))
        .collect();
    let mut ordered = Vec::new();
    if let Some(i) = &top.interpreter {
        files.insert(i.clone());
        ordered.push(i.clone());
    }
    while let Some((name, by)) = todo.pop() {
        let Some(path) = dirs.iter().map(|d| d.join(&name)).find(|p| p.exists()) else {
            return Err(ElfError::NotFound {
                library: name,
                by,
                dirs,
            });
        };
        if !files.insert(path.clone()) {
            continue;
        }
        let lib = parse(&path, &read(&path)?)?;
        todo.extend(lib.needed.into_iter().map(|n| (n, path.clone())));
        ordered.push(path);
    }
    Ok((top.architecture, ordered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_needs_libc_and_its_loader() {
        let exe = std::env::current_exe().unwrap();
        let (arch, files) = runtime_files(&exe).unwrap();
        assert_eq!(
            arch,
            if cfg!(target_arch = "x86_64") {
                "amd64"
            } else {
                arch
            }
        );
        if cfg!(target_env = "gnu") {
            let names: Vec<String> = files
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            assert!(names.iter().any(|n| n == "libc.so.6"), "{names:?}");
            assert!(
                names[0].starts_with("ld-linux"),
                "interpreter first: {names:?}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        let p = Path::new("x");
        assert!(matches!(
            parse(p, b"not an elf"),
            Err(ElfError::NotElf { .. })
        ));
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[0x20] = 0xff; // program headers past the end
        h[0x38] = 1;
        h[0x36] = 56;
        assert!(matches!(parse(p, &h), Err(ElfError::Malformed { .. })));
    }
}
