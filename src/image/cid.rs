//! The IPFS CIDv1 of a file as `ipfs add --cid-version=1` (kubo) computes
//! it: 256 KiB chunks as raw leaves, a balanced DAG of dag-pb UnixFS File
//! nodes with at most 174 links each, sha2-256 everywhere, and a one-chunk
//! file reduced to its raw leaf. Computed while streaming, in memory that
//! grows by one link per 256 KiB; the contract can then name a copy of the
//! image kept in IPFS or Filecoin.

use sha2::{Digest, Sha256};

pub const CHUNK: usize = 256 * 1024;
pub const MAX_LINKS: usize = 174;

const RAW: u8 = 0x55;
const DAG_PB: u8 = 0x70;
const SHA2_256: u8 = 0x12;

/// A CIDv1's binary form: version, codec, sha2-256 multihash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cid {
    codec: u8,
    digest: [u8; 32],
}

impl Cid {
    fn of(codec: u8, bytes: &[u8]) -> Self {
        Self {
            codec,
            digest: Sha256::digest(bytes).into(),
        }
    }

    pub fn to_bytes(self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[..4].copy_from_slice(&[0x01, self.codec, SHA2_256, 32]);
        b[4..].copy_from_slice(&self.digest);
        b
    }
}

/// Multibase base32 (lowercase, no padding, prefix `b`), as kubo prints CIDv1.
impl std::fmt::Display for Cid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut out = String::from("b");
        let (mut acc, mut bits) = (0u32, 0);
        for byte in self.to_bytes() {
            acc = (acc << 8) | u32::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
        }
        f.write_str(&out)
    }
}

#[derive(Debug, Clone, Copy)]
struct Link {
    cid: Cid,
    /// Bytes of the whole subtree's blocks (dag-pb `Tsize`).
    tsize: u64,
    /// Bytes of file content under it (UnixFS `blocksizes`).
    filesize: u64,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A dag-pb node holding a UnixFS File over `links`, in canonical dag-pb
/// order (Links, then Data).
fn file_node(links: &[Link]) -> Link {
    let mut node = Vec::with_capacity(links.len() * 48 + 16);
    for l in links {
        let mut pb_link = Vec::with_capacity(48);
        field_bytes(&mut pb_link, 0x0a, &l.cid.to_bytes()); // Hash
        field_bytes(&mut pb_link, 0x12, b""); // Name
        pb_link.push(0x18); // Tsize
        varint(&mut pb_link, l.tsize);
        field_bytes(&mut node, 0x12, &pb_link);
    }
    let filesize: u64 = links.iter().map(|l| l.filesize).sum();
    let mut data = vec![0x08, 0x02]; // Type: File
    data.push(0x18);
    varint(&mut data, filesize);
    for l in links {
        data.push(0x20);
        varint(&mut data, l.filesize);
    }
    field_bytes(&mut node, 0x0a, &data);
    Link {
        cid: Cid::of(DAG_PB, &node),
        tsize: node.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>(),
        filesize,
    }
}

/// Feed bytes in, get the CID out.
#[derive(Default)]
pub struct CidBuilder {
    chunk: Vec<u8>,
    /// Links not yet under a parent, by tree level (0: leaves).
    levels: Vec<Vec<Link>>,
}

impl CidBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (CHUNK - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == CHUNK {
                self.leaf();
            }
        }
    }

    fn leaf(&mut self) {
        let leaf = Link {
            cid: Cid::of(RAW, &self.chunk),
            tsize: self.chunk.len() as u64,
            filesize: self.chunk.len() as u64,
        };
        self.chunk.clear();
        self.push(0, leaf);
    }

    /// Add a link at `level`; a full level becomes one link a level up.
    fn push(&mut self, level: usize, link: Link) {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(link);
        if self.levels[level].len() == MAX_LINKS {
            let parent = file_node(&std::mem::take(&mut self.levels[level]));
            self.push(level + 1, parent);
        }
    }

    pub fn finish(mut self) -> Cid {
        if !self.chunk.is_empty() || self.levels.is_empty() {
            self.leaf();
        }
        let mut level = 0;
        loop {
            let top = self.levels.len() - 1;
            let links = std::mem::take(&mut self.levels[level]);
            if level == top && links.len() == 1 {
                return links[0].cid;
            }
            if !links.is_empty() {
                let parent = file_node(&links);
                if self.levels.len() <= level + 1 {
                    self.levels.push(Vec::new());
                }
                self.levels[level + 1].push(parent);
            }
            level += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(data: &[u8]) -> String {
        let mut b = CidBuilder::new();
        // Uneven writes must not change the chunking.
        for part in data.chunks(100_003) {
            b.update(part);
        }
        b.finish().to_string()
    }

    #[test]
    fn small_files_are_their_raw_leaf() {
        // Well-known kubo CIDv1s of "" and "hello world\n".
        assert_eq!(
            cid(b""),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            cid(b"hello world\n"),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
    }

    #[test]
    fn larger_files_become_dag_pb_trees() {
        let one = vec![7u8; CHUNK];
        let two = vec![7u8; CHUNK + 1];
        assert!(cid(&one).starts_with("bafkrei"), "one chunk: raw");
        assert!(cid(&two).starts_with("bafybei"), "two chunks: dag-pb");
        assert_ne!(cid(&two), cid(&vec![7u8; CHUNK + 2]));
    }
}
