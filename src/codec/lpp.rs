//! Cayenne Low Power Payload: a sequence of `channel | type | data` records,
//! data big-endian with a per-type resolution. Every type of the reference
//! library (IPSO object ids minus 3200) is here.

use super::error::CodecError;

/// One LPP data type: IPSO id, size in bytes, and its fields as
/// (name, bytes, signed, divisor).
#[derive(Debug)]
pub struct LppType {
    pub id: u8,
    pub name: &'static str,
    pub fields: &'static [(&'static str, usize, bool, f64)],
}

impl LppType {
    pub fn size(&self) -> usize {
        self.fields.iter().map(|f| f.1).sum()
    }
}

macro_rules! lpp_types {
    ($($id:literal $name:literal [$(($f:literal, $n:literal, $s:literal, $d:literal)),+]),+ $(,)?) => {
        /// All standard Cayenne LPP types.
        pub static TYPES: &[LppType] = &[$(LppType { id: $id, name: $name, fields: &[$(($f, $n, $s, $d)),+] }),+];
    };
}

lpp_types! {
    0 "digital_input" [("value", 1, false, 1.0)],
    1 "digital_output" [("value", 1, false, 1.0)],
    2 "analog_input" [("value", 2, true, 100.0)],
    3 "analog_output" [("value", 2, true, 100.0)],
    100 "generic_sensor" [("value", 4, false, 1.0)],
    101 "illuminance" [("value", 2, false, 1.0)],
    102 "presence" [("value", 1, false, 1.0)],
    103 "temperature" [("value", 2, true, 10.0)],
    104 "humidity" [("value", 1, false, 2.0)],
    113 "accelerometer" [("x", 2, true, 1000.0), ("y", 2, true, 1000.0), ("z", 2, true, 1000.0)],
    115 "barometer" [("value", 2, false, 10.0)],
    116 "voltage" [("value", 2, false, 100.0)],
    117 "current" [("value", 2, false, 1000.0)],
    118 "frequency" [("value", 4, false, 1.0)],
    120 "percentage" [("value", 1, false, 1.0)],
    121 "altitude" [("value", 2, true, 1.0)],
    122 "load" [("value", 3, true, 1000.0)],
    125 "concentration" [("value", 2, false, 1.0)],
    128 "power" [("value", 2, false, 1.0)],
    130 "distance" [("value", 4, false, 1000.0)],
    131 "energy" [("value", 4, false, 1000.0)],
    132 "direction" [("value", 2, false, 1.0)],
    133 "unixtime" [("value", 4, false, 1.0)],
    134 "gyrometer" [("x", 2, true, 100.0), ("y", 2, true, 100.0), ("z", 2, true, 100.0)],
    135 "colour" [("r", 1, false, 1.0), ("g", 1, false, 1.0), ("b", 1, false, 1.0)],
    136 "gps" [("latitude", 3, true, 10000.0), ("longitude", 3, true, 10000.0), ("altitude", 3, true, 100.0)],
    142 "switch" [("value", 1, false, 1.0)],
}

/// Index into `TYPES` by type id (0xff: unknown), built at compile time so
/// the per-record lookup is one load.
static BY_ID: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < TYPES.len() {
        t[TYPES[i].id as usize] = i as u8;
        i += 1;
    }
    t
};

pub fn type_by_id(id: u8) -> Option<&'static LppType> {
    TYPES.get(usize::from(BY_ID[usize::from(id)]))
}

/// A type given by id (`"103"`) or name (`"temperature"`).
pub fn type_by_name_or_id(text: &str) -> Option<&'static LppType> {
    match text.parse::<u8>() {
        Ok(id) => type_by_id(id),
        Err(_) => TYPES.iter().find(|t| t.name == text),
    }
}

/// One decoded LPP value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LppValue {
    pub channel: u8,
    pub type_id: u8,
    /// Index into the type's `fields`.
    pub field: u8,
    pub value: f64,
}

fn read_be(bytes: &[u8], signed: bool) -> i64 {
    let mut v: u64 = 0;
    for b in bytes {
        v = (v << 8) | u64::from(*b);
    }
    if signed {
        let bits = 64 - 8 * bytes.len() as u32;
        ((v << bits) as i64) >> bits
    } else {
        v as i64
    }
}

/// Decode `payload`, calling `emit` for every value. Stops at the first
/// malformed record: an unknown type has no known size, so nothing after it
/// can be trusted.
pub fn decode(
    payload: &[u8],
    mut emit: impl FnMut(LppValue) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let mut at = 0;
    while at < payload.len() {
        let [channel, type_id] = *payload
            .get(at..at + 2)
            .and_then(|s| <&[u8; 2]>::try_from(s).ok())
            .ok_or(CodecError::Truncated {
                at,
                need: 2,
                have: payload.len() - at,
            })?;
        let t = type_by_id(type_id).ok_or(CodecError::UnknownLppType { at, type_id })?;
        let body = payload
            .get(at + 2..at + 2 + t.size())
            .ok_or(CodecError::Truncated {
                at,
                need: 2 + t.size(),
                have: payload.len() - at,
            })?;
        let mut off = 0;
        for (i, &(_, n, signed, div)) in t.fields.iter().enumerate() {
            let raw = read_be(&body[off..off + n], signed);
            off += n;
            emit(LppValue {
                channel,
                type_id,
                field: i as u8,
                value: raw as f64 / div,
            })?;
        }
        at += 2 + t.size();
    }
    Ok(())
}

/// Append one record: what a mote does. Values are rounded to the type's
/// resolution and clamped to its range.
pub fn encode(out: &mut Vec<u8>, channel: u8, type_id: u8, values: &[f64]) {
    let t = type_by_id(type_id).expect("known LPP type");
    assert_eq!(
        values.len(),
        t.fields.len(),
        "one value per field of {}",
        t.name
    );
    out.push(channel);
    out.push(type_id);
    for (&(_, n, signed, div), v) in t.fields.iter().zip(values) {
        let bits = 8 * n as u32;
        let (lo, hi) = if signed {
            (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
        } else {
            (0, (1i64 << bits) - 1)
        };
        let raw = ((v * div).round() as i64).clamp(lo, hi);
        out.extend_from_slice(&raw.to_be_bytes()[8 - n..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(payload: &[u8]) -> Result<Vec<LppValue>, CodecError> {
        let mut v = Vec::new();
        decode(payload, |x| {
            v.push(x);
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn published_fixtures() {
        let v = all(&hex::decode("03670110056700FF").unwrap()).unwrap();
        assert_eq!((v[0].channel, v[0].value), (3, 27.2));
        assert_eq!((v[1].channel, v[1].value), (5, 25.5));
        let g = all(&hex::decode("018806765ff2960a0003e8").unwrap()).unwrap();
        assert_eq!(
            g.iter().map(|x| x.value).collect::<Vec<_>>(),
            vec![42.3519, -87.9094, 10.0]
        );
    }

    #[test]
    fn every_type_round_trips() {
        for t in TYPES {
            let values: Vec<f64> = t
                .fields
                .iter()
                .map(|&(_, _, s, d)| if s { -3.0 / d } else { 7.0 / d })
                .collect();
            let mut p = Vec::new();
            encode(&mut p, 9, t.id, &values);
            assert_eq!(p.len(), 2 + t.size(), "{}", t.name);
            let got: Vec<f64> = all(&p).unwrap().iter().map(|x| x.value).collect();
            assert_eq!(got, values, "{}", t.name);
        }
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert_eq!(
            all(&[1]),
            Err(CodecError::Truncated {
                at: 0,
                need: 2,
                have: 1
            })
        );
        assert_eq!(
            all(&[1, 103, 0]),
            Err(CodecError::Truncated {
                at: 0,
                need: 4,
                have: 3
            })
        );
        assert_eq!(
            all(&[1, 250, 0]),
            Err(CodecError::UnknownLppType {
                at: 0,
                type_id: 250
            })
        );
    }
}
