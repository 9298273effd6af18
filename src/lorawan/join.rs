//! Over-the-air activation, LoRaWAN 1.0.2 – 1.0.4 (§6.2): the JoinRequest
//! a device sends, the JoinAccept we answer with, and the session keys both
//! sides derive. Pure: bytes in, bytes or keys out.
//!
//! - JoinRequest: `MHDR | JoinEUI | DevEUI | DevNonce | MIC`, the MIC the
//!   first four bytes of AES-CMAC(AppKey) over the rest, compared in
//!   constant time.
//! - JoinAccept: `MHDR | JoinNonce | NetID | DevAddr | DLSettings | RxDelay |
//!   [CFList] | MIC`, MIC by AES-CMAC(AppKey); everything after the MHDR is
//!   then *decrypted* with the AppKey in ECB (§6.2.3), so that the device,
//!   which only has AES encryption, encrypts to read it.
//! - Keys: NwkSKey = AES(AppKey, 0x01 | JoinNonce | NetID | DevNonce | pad),
//!   AppSKey the same with 0x02 (§6.2.5). Multi-byte fields are
//!   little-endian on air.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};
use subtle::ConstantTimeEq;

use super::keys::{AesKey, DevAddr, Eui64};

pub const JOIN_REQUEST_LEN: usize = 23;
const MHDR_JOIN_REQUEST: u8 = 0x00;
const MHDR_JOIN_ACCEPT: u8 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("a JoinRequest is 23 bytes, not {0}")]
    Length(usize),
    #[error("not a JoinRequest (MHDR {0:#04x})")]
    NotJoinRequest(u8),
    #[error("JoinRequest MIC does not verify with the device's AppKey")]
    Mic,
}

/// A JoinRequest as read off the air, its MIC not yet checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRequest {
    pub join_eui: Eui64,
    pub dev_eui: Eui64,
    pub dev_nonce: u16,
    mic: [u8; 4],
    signed: [u8; 19],
}

fn eui_le(b: &[u8]) -> Eui64 {
    let mut be = [0u8; 8];
    for (i, x) in b.iter().rev().enumerate() {
        be[i] = *x;
    }
    Eui64(be)
}

fn cmac4(key: &AesKey, msg: &[u8]) -> [u8; 4] {
    let mut mac = <Cmac<Aes128> as Mac>::new_from_slice(key.expose()).expect("16-byte key");
    mac.update(msg);
    let tag = mac.finalize().into_bytes();
    [tag[0], tag[1], tag[2], tag[3]]
}

/// Read a JoinRequest: framing only (who it claims to be). Check its MIC
/// with [`JoinRequest::verify`] once the device's AppKey is found.
pub fn parse_join_request(phy: &[u8]) -> Result<JoinRequest, JoinError> {
    if phy.len() != JOIN_REQUEST_LEN {
        return Err(JoinError::Length(phy.len()));
    }
    if phy[0] != MHDR_JOIN_REQUEST {
        return Err(JoinError::NotJoinRequest(phy[0]));
    }
    let mut signed = [0u8; 19];
    signed.copy_from_slice(&phy[..19]);
    Ok(JoinRequest {
        join_eui: eui_le(&phy[1..9]),
        dev_eui: eui_le(&phy[9..17]),
        dev_nonce: u16::from_le_bytes([phy[17], phy[18]]),
        mic: [phy[19], phy[20], phy[21], phy[22]],
        signed,
    })
}

impl JoinRequest {
    /// Whether `app_key` signed it (constant-time compare).
    pub fn verify(&self, app_key: &AesKey) -> Result<(), JoinError> {
        let want = cmac4(app_key, &self.signed);
        if bool::from(want.ct_eq(&self.mic)) {
            Ok(())
        } else {
            Err(JoinError::Mic)
        }
    }
}

/// Build a JoinRequest (the simulator's motes, and tests).
pub fn build_join_request(
    app_key: &AesKey,
    join_eui: Eui64,
    dev_eui: Eui64,
    dev_nonce: u16,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(JOIN_REQUEST_LEN);
    b.push(MHDR_JOIN_REQUEST);
    b.extend(join_eui.0.iter().rev());
    b.extend(dev_eui.0.iter().rev());
    b.extend(dev_nonce.to_le_bytes());
    let mic = cmac4(app_key, &b);
    b.extend(mic);
    b
}

/// What a JoinAccept tells the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptFields {
    /// 24 bits: AppNonce in 1.0.2, JoinNonce (a counter) in 1.0.3+.
    pub join_nonce: u32,
    /// 24 bits.
    pub net_id: u32,
    pub dev_addr: DevAddr,
    pub rx1_dr_offset: u8,
    pub rx2_dr: u8,
    /// Seconds (1..=15; 0 on air means 1).
    pub rx_delay: u8,
    pub cf_list: Option<[u8; 16]>,
}

fn le24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// The plaintext JoinAccept with its MIC, before encryption.
fn accept_plain(app_key: &AesKey, f: &AcceptFields) -> Vec<u8> {
    let mut b = Vec::with_capacity(33);
    b.push(MHDR_JOIN_ACCEPT);
    b.extend(le24(f.join_nonce & 0xff_ffff));
    b.extend(le24(f.net_id & 0xff_ffff));
    b.extend(f.dev_addr.to_wire());
    b.push(((f.rx1_dr_offset & 0x07) << 4) | (f.rx2_dr & 0x0f));
    b.push(f.rx_delay & 0x0f);
    if let Some(cf) = f.cf_list {
        b.extend(cf);
    }
    let mic = cmac4(app_key, &b);
    b.extend(mic);
    b
}

/// The JoinAccept PHYPayload, encrypted as §6.2.3 says (AES decrypt).
pub fn build_join_accept(app_key: &AesKey, f: &AcceptFields) -> Vec<u8> {
    let mut b = accept_plain(app_key, f);
    let aes = Aes128::new(GenericArray::from_slice(app_key.expose()));
    for chunk in b[1..].chunks_mut(16) {
        aes.decrypt_block(GenericArray::from_mut_slice(chunk));
    }
    b
}

/// Read a JoinAccept as a device does (the simulator's motes): encrypt to
/// decrypt, check the MIC. `None` if it is not one for this AppKey.
pub fn open_join_accept(app_key: &AesKey, phy: &[u8]) -> Option<AcceptFields> {
    if !(phy.len() == 17 || phy.len() == 33) || phy[0] != MHDR_JOIN_ACCEPT {
        return None;
    }
    let mut b = phy.to_vec();
    let aes = Aes128::new(GenericArray::from_slice(app_key.expose()));
    for chunk in b[1..].chunks_mut(16) {
        aes.encrypt_block(GenericArray::from_mut_slice(chunk));
    }
    let (msg, mic) = b.split_at(b.len() - 4);
    if !bool::from(cmac4(app_key, msg).ct_eq(mic)) {
        return None;
    }
    let u24 = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], 0]);
    Some(AcceptFields {
        join_nonce: u24(1),
        net_id: u24(4),
        dev_addr: DevAddr::from_wire([b[7], b[8], b[9], b[10]]),
        rx1_dr_offset: (b[11] >> 4) & 0x07,
        rx2_dr: b[11] & 0x0f,
        rx_delay: b[12] & 0x0f,
        cf_list: (b.len() == 33).then(|| {
            let mut cf = [0u8; 16];
            cf.copy_from_slice(&b[13..29]);
            cf
        }),
    })
}

/// NwkSKey and AppSKey of the session a join made (LoRaWAN 1.0.x §6.2.5).
pub fn session_keys(
    app_key: &AesKey,
    join_nonce: u32,
    net_id: u32,
    dev_nonce: u16,
) -> (AesKey, AesKey) {
    let aes = Aes128::new(GenericArray::from_slice(app_key.expose()));
    let key = |kind: u8| {
        let mut b = [0u8; 16];
        b[0] = kind;
        b[1..4].copy_from_slice(&le24(join_nonce));
        b[4..7].copy_from_slice(&le24(net_id));
        b[7..9].copy_from_slice(&dev_nonce.to_le_bytes());
        let mut block = GenericArray::from(b);
        aes.encrypt_block(&mut block);
        AesKey::new(block.into())
    };
    (key(0x01), key(0x02))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(h: &str) -> AesKey {
        AesKey::from_hex(h).unwrap()
    }

    #[test]
    fn join_request_round_trip_and_refusals() {
        let k = key("2b7e151628aed2a6abf7158809cf4f3c");
        let (j, d) = (
            Eui64::from_u64(0x70b3d57ed0000000),
            Eui64::from_u64(0x0004a30b001c0530),
        );
        let phy = build_join_request(&k, j, d, 0x1234);
        let r = parse_join_request(&phy).unwrap();
        assert_eq!((r.join_eui, r.dev_eui, r.dev_nonce), (j, d, 0x1234));
        r.verify(&k).unwrap();
        assert_eq!(
            r.verify(&key("000102030405060708090a0b0c0d0e0f")),
            Err(JoinError::Mic)
        );
        let mut bad = phy.clone();
        bad[17] ^= 1;
        assert_eq!(
            parse_join_request(&bad).unwrap().verify(&k),
            Err(JoinError::Mic)
        );
        assert_eq!(parse_join_request(&phy[..22]), Err(JoinError::Length(22)));
        let mut data = phy.clone();
        data[0] = 0x40;
        assert_eq!(
            parse_join_request(&data),
            Err(JoinError::NotJoinRequest(0x40))
        );
    }

    #[test]
    fn join_accept_round_trip_with_and_without_cflist() {
        let k = key("2b7e151628aed2a6abf7158809cf4f3c");
        for cf_list in [
            None,
            Some([
                0x18, 0x4f, 0x84, 0xe8, 0x56, 0x84, 0xb8, 0x5e, 0x84, 0x88, 0x66, 0x84, 0x58, 0x6e,
                0x84, 0,
            ]),
        ] {
            let f = AcceptFields {
                join_nonce: 0x000102,
                net_id: 0x000013,
                dev_addr: DevAddr(0x26011bda),
                rx1_dr_offset: 2,
                rx2_dr: 3,
                rx_delay: 1,
                cf_list,
            };
            let phy = build_join_accept(&k, &f);
            assert_eq!(phy.len(), if cf_list.is_some() { 33 } else { 17 });
            assert_eq!(open_join_accept(&k, &phy), Some(f));
            assert_eq!(
                open_join_accept(&key("000102030405060708090a0b0c0d0e0f"), &phy),
                None
            );
        }
    }
}
