//! Session keys and the identifiers they belong to.
//!
//! A [`AesKey`] can be built from hex but never printed, serialised or
//! compared in variable time: its `Debug` prints `<redacted>` and it has no
//! `Display` or `Serialize`, so a key cannot reach a log line or an API
//! answer by accident.

use std::fmt;

use subtle::ConstantTimeEq;

/// Why a key, EUI or address could not be read. The offending text is never
/// included: for keys it would be the secret itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("expected {expected} hex digits, got {got} characters")]
    Length { expected: usize, got: usize },
    #[error("not a hexadecimal string")]
    NotHex,
}

fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], KeyError> {
    let text = text.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.len() != N * 2 {
        return Err(KeyError::Length {
            expected: N * 2,
            got: text.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| KeyError::NotHex)?;
    Ok(out)
}

/// A 128-bit AES session key (NwkSKey or AppSKey).
#[derive(Clone, Copy)]
pub struct AesKey([u8; 16]);

impl AesKey {
    pub const fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        decode_hex::<16>(text).map(Self)
    }

    /// The raw key bytes, for preparing a cipher. Keep the result on the stack.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

impl PartialEq for AesKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for AesKey {}

/// A 32-bit device address, held as the number the spec prints
/// (`26011BDA`); the wire carries it little-endian.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevAddr(pub u32);

impl DevAddr {
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        decode_hex::<4>(text).map(|b| Self(u32::from_be_bytes(b)))
    }
    pub fn from_wire(le: [u8; 4]) -> Self {
        Self(u32::from_le_bytes(le))
    }
    pub fn to_wire(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }
}

impl fmt::Display for DevAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}
impl fmt::Debug for DevAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevAddr({self})")
    }
}

/// A 64-bit EUI (DevEUI or gateway id), held big-endian as printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Eui64(pub [u8; 8]);

impl Eui64 {
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        decode_hex::<8>(text).map(Self)
    }
    pub fn from_u64(v: u64) -> Self {
        Self(v.to_be_bytes())
    }
    pub fn as_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl fmt::Display for Eui64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
impl fmt::Debug for Eui64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eui64({self})")
    }
}

impl serde::Serialize for Eui64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// DevAddrs and EUIs are written as their hex text (`26011bda`).
impl serde::Serialize for DevAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> serde::Deserialize<'de> for DevAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DevAddr::from_hex(&text).map_err(serde::de::Error::custom)
    }
}
impl<'de> serde::Deserialize<'de> for Eui64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Eui64::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_debug_is_redacted() {
        let k = AesKey::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("2b7e"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn key_errors_do_not_echo_the_text() {
        let err = AesKey::from_hex("2b7e151628aed2a6abf7158809cf4fzz").unwrap_err();
        assert_eq!(err, KeyError::NotHex);
        assert!(!err.to_string().contains("2b7e"));
        assert_eq!(
            AesKey::from_hex("00").unwrap_err(),
            KeyError::Length {
                expected: 32,
                got: 2
            }
        );
    }

    #[test]
    fn devaddr_is_big_endian_text_little_endian_wire() {
        let a = DevAddr::from_hex("01020304").unwrap();
        assert_eq!(a.to_wire(), [4, 3, 2, 1]);
        assert_eq!(DevAddr::from_wire([4, 3, 2, 1]), a);
        assert_eq!(a.to_string(), "01020304");
    }
}
