//! A content-addressed blob store (`blobs/sha256/<hex>`), the shape of an
//! OCI layout: images arrive here from another edge and are read back from
//! here to start them. A blob is written to a temp file, its digest checked
//! against the one it was announced with, and only then renamed into place,
//! so a name always holds exactly its content. Reading checks again: a
//! blob altered on disk is an error, not an image.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not a sha256:<64 hex> digest")]
    BadDigest(String),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    Mismatch { expected: String, actual: String },
    #[error("no blob {0}")]
    Missing(String),
}

/// A `sha256:<hex>` digest, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let hex = text
            .strip_prefix("sha256:")
            .filter(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .ok_or_else(|| StoreError::BadDigest(text.to_string()))?;
        Ok(Self(format!("sha256:{hex}")))
    }
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct BlobStore {
    root: PathBuf,
}

/// A file's identities, in one read: its sha256, its IPFS CIDv1 and its size.
pub fn identify(path: &Path) -> Result<(Digest, String, u64), StoreError> {
    let (mut sha, mut cid) = (Sha256::new(), crate::image::cid::CidBuilder::new());
    let len = each_chunk(path, |b| {
        sha.update(b);
        cid.update(b);
        Ok(())
    })?;
    let digest = Digest(format!("sha256:{}", hex::encode(sha.finalize())));
    Ok((digest, cid.finish().to_string(), len))
}

/// Read `path` in 64 KiB pieces, handing each to `f`; returns the length.
fn each_chunk(
    path: &Path,
    mut f: impl FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(len);
        }
        f(&buf[..n])?;
        len += n as u64;
    }
}

/// A blob being written: bytes go to a temp file and into the hash.
pub struct Incoming {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    sha: Sha256,
    len: u64,
    expected: Digest,
}

impl Incoming {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(|source| StoreError::Io {
                path: self.tmp.clone(),
                source,
            })?;
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Check the digest; on a match make the blob visible under its name.
    /// On a mismatch the temp file is removed and nothing is stored.
    pub fn commit(self) -> Result<Digest, StoreError> {
        let actual = format!("sha256:{}", hex::encode(self.sha.finalize()));
        if actual != self.expected.0 {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(StoreError::Mismatch {
                expected: self.expected.0,
                actual,
            });
        }
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| StoreError::Io { path: p, source }
        };
        self.file.sync_all().map_err(io(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        Ok(self.expected)
    }
}

impl BlobStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir, source })?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Start writing the blob announced as `expected`. A partial temp file
    /// of an earlier attempt is kept and continued from (`Incoming::len`):
    /// transfers resume where they stopped.
    pub fn incoming(&self, expected: &Digest) -> Result<Incoming, StoreError> {
        let path = self.path(expected);
        let tmp = path.with_extension("partial");
        let io = |source| StoreError::Io {
            path: tmp.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&tmp)
            .map_err(io)?;
        // Re-hash what is already there, streaming.
        let mut sha = Sha256::new();
        let len = each_chunk(&tmp, |b| {
            sha.update(b);
            Ok(())
        })?;
        Ok(Incoming {
            path,
            tmp,
            file,
            sha,
            len,
            expected: expected.clone(),
        })
    }

    /// Bytes of `d` already held: its size when complete, else what a
    /// transfer left in its partial file (0 if none). Cheap: no hashing.
    pub fn held(&self, d: &Digest) -> (u64, bool) {
        let len = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        if self.contains(d) {
            (len(self.path(d)), true)
        } else {
            (len(self.path(d).with_extension("partial")), false)
        }
    }

    /// Drop a partial transfer (after a refused chunk, say).
    pub fn discard_partial(&self, d: &Digest) {
        let _ = std::fs::remove_file(self.path(d).with_extension("partial"));
    }

    /// Store a whole file (e.g. an image just packaged), checked against its digest.
    pub fn put_file(&self, src: &Path, expected: &Digest) -> Result<Digest, StoreError> {
        self.discard_partial(expected);
        let mut incoming = self.incoming(expected)?;
        each_chunk(src, |b| incoming.write(b))?;
        incoming.commit()
    }

    /// Check a stored blob against its name, streaming; returns its size.
    pub fn verify(&self, d: &Digest) -> Result<u64, StoreError> {
        if !self.contains(d) {
            return Err(StoreError::Missing(d.to_string()));
        }
        let mut sha = Sha256::new();
        let len = each_chunk(&self.path(d), |b| {
            sha.update(b);
            Ok(())
        })?;
        let actual = format!("sha256:{}", hex::encode(sha.finalize()));
        if actual != d.0 {
            return Err(StoreError::Mismatch {
                expected: d.to_string(),
                actual,
            });
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_on_the_way_in_and_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = b"an image, or any blob".repeat(1000);
        let d = Digest::of(&data);
        // Written in two sessions: the second resumes from the first's offset.
        let mut i = store.incoming(&d).unwrap();
        i.write(&data[..5000]).unwrap();
        drop(i);
        let mut i = store.incoming(&d).unwrap();
        assert_eq!(i.len(), 5000);
        i.write(&data[5000..]).unwrap();
        assert_eq!(i.commit().unwrap(), d);
        assert_eq!(store.verify(&d).unwrap(), data.len() as u64);

        // Announced as one thing, carrying another: nothing is stored.
        let other = Digest::of(b"something else");
        let mut i = store.incoming(&other).unwrap();
        i.write(b"not that").unwrap();
        assert!(matches!(i.commit(), Err(StoreError::Mismatch { .. })));
        assert!(!store.contains(&other));
        assert!(!store.path(&other).with_extension("partial").exists());

        // Altered on disk: reading says so.
        let mut bytes = std::fs::read(store.path(&d)).unwrap();
        bytes[10] ^= 1;
        std::fs::write(store.path(&d), bytes).unwrap();
        assert!(matches!(store.verify(&d), Err(StoreError::Mismatch { .. })));
        assert!(matches!(store.verify(&other), Err(StoreError::Missing(_))));
    }

    #[test]
    fn digests_are_validated() {
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(&format!("md5:{}", "a".repeat(64))).is_err());
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        assert_eq!(d.hex().len(), 64);
    }
}
