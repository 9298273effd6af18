//! An edge's identity: an Ed25519 key pair. The private half stays in
//! `identity.key` (hex seed, mode 0600) and never leaves the edge; the
//! public half is what contracts name and TLS pins.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

pub const KEY_FILE: &str = "identity.key";
pub const PUB_FILE: &str = "identity.pub";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a 32-byte hex Ed25519 key")]
    BadKey { path: PathBuf },
    #[error("{path} exists: refusing to replace an edge identity")]
    Exists { path: PathBuf },
    #[error("no randomness from the OS: {0}")]
    Random(String),
    #[error("{path} is readable by group or others (mode {mode:o}): chmod 600 it")]
    Exposed { path: PathBuf, mode: u32 },
}

/// A public key, printed and parsed as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl PublicKey {
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok().map(Self)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// This edge's key pair. Its `Debug` shows only the public key.
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public().to_hex())
    }
}

impl Identity {
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The 32-byte seed, for TLS certificate generation; handle as a secret.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Write a new identity into `dir` (never over an existing one).
    pub fn create(dir: &Path) -> Result<Self, IdentityError> {
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() {
            return Err(IdentityError::Exists { path: key_path });
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| IdentityError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let id = Self::generate()?;
        crate::fsutil::write_atomic(&key_path, hex::encode(id.seed()).as_bytes(), 0o600)
            .map_err(io(&key_path))?;
        let pub_path = dir.join(PUB_FILE);
        crate::fsutil::write_atomic(
            &pub_path,
            format!("{}\n", id.public().to_hex()).as_bytes(),
            0o644,
        )
        .map_err(io(&pub_path))?;
        Ok(id)
    }

    /// Load the identity in `dir`, refusing a key file others can read.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(KEY_FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Exposed { path, mode });
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| IdentityError::BadKey { path: path.clone() })?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }
}

/// Whether `signature` is `key`'s over `message` (strict verification:
/// no malleable or small-order forgeries).
pub fn verify(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    key.0
        .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_created_once_kept_private_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::create(dir.path()).unwrap();
        assert!(matches!(
            Identity::create(dir.path()),
            Err(IdentityError::Exists { .. })
        ));
        let again = Identity::load(dir.path()).unwrap();
        assert_eq!(again.public(), id.public());
        let sig = id.sign(b"contract");
        assert!(verify(&id.public(), b"contract", &sig));
        assert!(!verify(&id.public(), b"contracT", &sig));
        assert!(!verify(&id.public(), b"contract", &sig[..63]));
        let shown = format!("{id:?}");
        assert!(!shown.contains(&hex::encode(id.seed())), "{shown}");
        let pubtext = std::fs::read_to_string(dir.path().join(PUB_FILE)).unwrap();
        assert_eq!(PublicKey::from_hex(&pubtext), Some(id.public()));

        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Exposed { .. })
        ));
    }
}
