//! Every call an edge makes to the market is signed with the edge's
//! Ed25519 identity (the key its handover contracts already carry), over
//! the method, the path, a timestamp, a nonce and the body's SHA-256. The
//! market refuses a call outside [`WINDOW`] of its clock and a nonce it has
//! seen from that key: a recorded call cannot be played again.

use sha2::{Digest, Sha256};

use crate::handover::identity::{Identity, PublicKey};

/// Headers of a signed call.
pub const KEY: &str = "x-edge-key";
pub const TIME: &str = "x-edge-time";
pub const NONCE: &str = "x-edge-nonce";
pub const SIGNATURE: &str = "x-edge-signature";

/// How far a call's time may be from the market's (ms).
pub const WINDOW: u64 = 60_000;

const DOMAIN: &[u8] = b"device-lorawan market call v1\n";

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the call is not signed: header {0} is missing")]
    Missing(&'static str),
    #[error("header {0} does not read")]
    Malformed(&'static str),
    #[error("the call's time is {skew_ms} ms from the market's (at most {WINDOW})")]
    Stale { skew_ms: u64 },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("nonce {0} was used before: a replayed call")]
    Replayed(String),
}

/// The bytes a call's signature covers.
pub fn signed_bytes(method: &str, path: &str, time_ms: u64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut b = DOMAIN.to_vec();
    b.extend_from_slice(method.as_bytes());
    b.push(b'\n');
    b.extend_from_slice(path.as_bytes());
    b.push(b'\n');
    b.extend_from_slice(time_ms.to_string().as_bytes());
    b.push(b'\n');
    b.extend_from_slice(nonce.as_bytes());
    b.push(b'\n');
    b.extend_from_slice(hex::encode(Sha256::digest(body)).as_bytes());
    b
}

/// The headers that sign a call by `me`.
pub fn sign(
    me: &Identity,
    method: &str,
    path: &str,
    body: &[u8],
    time_ms: u64,
) -> Vec<(&'static str, String)> {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).expect("the OS gives random bytes");
    let nonce = hex::encode(n);
    let sig = me.sign(&signed_bytes(method, path, time_ms, &nonce, body));
    vec![
        (KEY, me.public().to_hex()),
        (TIME, time_ms.to_string()),
        (NONCE, nonce),
        (SIGNATURE, hex::encode(sig)),
    ]
}

/// A call's signer, once its signature and time hold; the nonce is for the
/// caller to check against those seen.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: PublicKey,
    pub time_ms: u64,
    pub nonce: String,
}

/// Check a call's signature and time; `header` reads a header.
pub fn verify<'a>(
    header: impl Fn(&'static str) -> Option<&'a str>,
    method: &str,
    path: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<Caller, AuthError> {
    let get = |h| header(h).ok_or(AuthError::Missing(h));
    let key = PublicKey::from_hex(get(KEY)?).ok_or(AuthError::Malformed(KEY))?;
    let time_ms: u64 = get(TIME)?.parse().map_err(|_| AuthError::Malformed(TIME))?;
    let nonce = get(NONCE)?;
    if nonce.is_empty() || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Malformed(NONCE));
    }
    let sig = hex::decode(get(SIGNATURE)?).map_err(|_| AuthError::Malformed(SIGNATURE))?;
    let skew_ms = now_ms.abs_diff(time_ms);
    if skew_ms > WINDOW {
        return Err(AuthError::Stale { skew_ms });
    }
    if !crate::handover::identity::verify(
        &key,
        &signed_bytes(method, path, time_ms, nonce, body),
        &sig,
    ) {
        return Err(AuthError::BadSignature);
    }
    Ok(Caller {
        key,
        time_ms,
        nonce: nonce.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        h: &[(&'static str, String)],
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<Caller, AuthError> {
        verify(
            |k| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str()),
            method,
            path,
            body,
            now,
        )
    }

    #[test]
    fn a_signed_call_verifies_and_any_change_is_refused() {
        let me = Identity::generate().unwrap();
        let now = 1_800_000_000_000;
        let h = sign(&me, "POST", "/api/v3/market/offers", b"{}", now);
        let c = check(&h, "POST", "/api/v3/market/offers", b"{}", now + 10).unwrap();
        assert_eq!(c.key, me.public());
        for (m, p, b) in [
            ("PUT", "/api/v3/market/offers", &b"{}"[..]),
            ("POST", "/api/v3/market/demands", b"{}"),
            ("POST", "/api/v3/market/offers", b"{ }"),
        ] {
            assert_eq!(
                check(&h, m, p, b, now).unwrap_err(),
                AuthError::BadSignature
            );
        }
        assert!(matches!(
            check(&h, "POST", "/api/v3/market/offers", b"{}", now + WINDOW + 1).unwrap_err(),
            AuthError::Stale { .. }
        ));
        let mut other = h.clone();
        other[0].1 = Identity::generate().unwrap().public().to_hex();
        assert_eq!(
            check(&other, "POST", "/api/v3/market/offers", b"{}", now).unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            check(&h[1..], "POST", "/api/v3/market/offers", b"{}", now).unwrap_err(),
            AuthError::Missing(KEY)
        );
        // Two calls never share a nonce.
        let h2 = sign(&me, "POST", "/api/v3/market/offers", b"{}", now);
        assert_ne!(h[2].1, h2[2].1);
    }
}
