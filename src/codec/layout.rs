//! A declarative binary layout: each resource's `attributes` say where its
//! bytes are (`offset`, `length`), how to read them (`signed`,
//! `endianness`: big|little, `format`: int|float|bool); the resource's
//! EdgeX properties (`mask`, `shift`, `base`, `scale`, `offset`) then apply.

use std::collections::BTreeMap;

use super::error::CodecError;
use super::value::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Int,
    Float,
    Bool,
}

/// Where one resource's value sits in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub length: usize,
    pub signed: bool,
    pub little_endian: bool,
    pub format: Format,
}

impl Field {
    /// Read a field from a resource's attributes; `None` when the resource
    /// has no `offset` attribute (it is not part of the uplink layout).
    pub fn from_attributes(
        resource: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<Option<Self>, CodecError> {
        let Some(offset) = attrs.get("offset") else {
            return Ok(None);
        };
        let bad = |key: &str, message: &str| CodecError::Attribute {
            resource: resource.into(),
            key: key.into(),
            message: message.into(),
        };
        let offset: usize = offset
            .parse()
            .map_err(|_| bad("offset", "not a byte offset"))?;
        // No LoRaWAN payload is longer than 242 bytes (255 less the frame
        // around it): a field beyond that can never be read or sent, and
        // bounding it here keeps `offset + length` from overflowing.
        if offset >= 242 {
            return Err(bad(
                "offset",
                "beyond any LoRaWAN payload (at most 242 bytes)",
            ));
        }
        let length: usize = attrs
            .get("length")
            .ok_or_else(|| bad("length", "missing"))?
            .parse()
            .map_err(|_| bad("length", "not a number"))?;
        let flag = |key: &str| match attrs.get(key).map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(bad(key, "expected true or false")),
        };
        let little_endian = match attrs.get("endianness").map(String::as_str) {
            None | Some("big") => false,
            Some("little") => true,
            Some(_) => return Err(bad("endianness", "expected big or little")),
        };
        let format = match attrs.get("format").map(String::as_str) {
            None | Some("int") => Format::Int,
            Some("float") => Format::Float,
            Some("bool") => Format::Bool,
            Some(_) => return Err(bad("format", "expected int, float or bool")),
        };
        let ok_len = match format {
            Format::Float => matches!(length, 4 | 8),
            _ => (1..=8).contains(&length),
        };
        if !ok_len {
            return Err(bad("length", "unsupported for this format"));
        }
        Ok(Some(Self {
            offset,
            length,
            signed: flag("signed")?,
            little_endian,
            format,
        }))
    }

    /// The raw value of this field in `payload`, before EdgeX transforms;
    /// on a short payload, the length it would need.
    pub fn read(&self, payload: &[u8]) -> Result<Value, usize> {
        let bytes = payload
            .get(self.offset..self.offset + self.length)
            .ok_or(self.offset + self.length)?;
        let mut buf = [0u8; 8];
        if self.little_endian {
            buf[..self.length].copy_from_slice(bytes);
        } else {
            buf[8 - self.length..].copy_from_slice(bytes);
        }
        let u = if self.little_endian {
            u64::from_le_bytes(buf)
        } else {
            u64::from_be_bytes(buf)
        };
        Ok(match self.format {
            Format::Bool => Value::Bool(u != 0),
            Format::Float if self.length == 4 => Value::Float(f64::from(f32::from_bits(u as u32))),
            Format::Float => Value::Float(f64::from_bits(u)),
            Format::Int if self.signed => {
                let bits = 64 - 8 * self.length as u32;
                Value::Int(((u << bits) as i64) >> bits)
            }
            Format::Int => Value::Uint(u),
        })
    }
}

impl Field {
    /// Write `value` into its bytes of `payload` (the inverse of [`read`]);
    /// the caller sized `payload` to hold the field. `Err` says why the value
    /// cannot take this field's form.
    ///
    /// [`read`]: Field::read
    pub fn write(&self, value: &Value, payload: &mut [u8]) -> Result<(), &'static str> {
        let bits = 8 * self.length as u32;
        let u: u64 = match (self.format, value) {
            (Format::Bool, Value::Bool(b)) => u64::from(*b),
            (Format::Float, Value::Float(f)) if self.length == 4 => {
                u64::from((*f as f32).to_bits())
            }
            (Format::Float, Value::Float(f)) => f.to_bits(),
            (Format::Int, Value::Uint(u)) if bits == 64 || *u < 1 << bits => *u,
            (Format::Int, Value::Int(i)) if self.signed => {
                let (min, max) = if bits == 64 {
                    (i64::MIN, i64::MAX)
                } else {
                    (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
                };
                if !(min..=max).contains(i) {
                    return Err("does not fit the field");
                }
                (*i as u64)
                    & if bits == 64 {
                        u64::MAX
                    } else {
                        (1 << bits) - 1
                    }
            }
            (Format::Int, Value::Int(i)) if *i >= 0 => {
                return self.write(&Value::Uint(*i as u64), payload)
            }
            (Format::Int, Value::Uint(_) | Value::Int(_)) => return Err("does not fit the field"),
            _ => return Err("is not of the field's format"),
        };
        let out = &mut payload[self.offset..self.offset + self.length];
        if self.little_endian {
            out.copy_from_slice(&u.to_le_bytes()[..self.length]);
        } else {
            out.copy_from_slice(&u.to_be_bytes()[8 - self.length..]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_is_the_inverse_of_read() {
        let cases: &[(&[(&str, &str)], Value)] = &[
            (&[("offset", "0"), ("length", "2")], Value::Uint(0xbeef)),
            (
                &[("offset", "1"), ("length", "2"), ("signed", "true")],
                Value::Int(-2),
            ),
            (
                &[("offset", "0"), ("length", "3"), ("endianness", "little")],
                Value::Uint(0x123456),
            ),
            (
                &[("offset", "2"), ("length", "8"), ("format", "float")],
                Value::Float(-1.25),
            ),
            (
                &[("offset", "0"), ("length", "1"), ("format", "bool")],
                Value::Bool(true),
            ),
        ];
        for (a, v) in cases {
            let f = Field::from_attributes("r", &attrs(a)).unwrap().unwrap();
            let mut p = vec![0u8; f.offset + f.length];
            f.write(v, &mut p).unwrap();
            assert_eq!(&f.read(&p).unwrap(), v, "{a:?}");
        }
        let f = Field::from_attributes("r", &attrs(&[("offset", "0"), ("length", "1")]))
            .unwrap()
            .unwrap();
        let mut p = [0u8; 1];
        assert!(f.write(&Value::Uint(256), &mut p).is_err());
        assert!(f.write(&Value::Int(-1), &mut p).is_err());
        assert!(f.write(&Value::Float(1.0), &mut p).is_err());
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_signed_little_and_float() {
        let p = [0xff, 0xfe, 0x34, 0x12, 0x40, 0x49, 0x0f, 0xdb];
        let f = Field::from_attributes(
            "a",
            &attrs(&[("offset", "0"), ("length", "2"), ("signed", "true")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.read(&p).unwrap(), Value::Int(-2));
        let f = Field::from_attributes(
            "b",
            &attrs(&[("offset", "2"), ("length", "2"), ("endianness", "little")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.read(&p).unwrap(), Value::Uint(0x1234));
        let f = Field::from_attributes(
            "c",
            &attrs(&[("offset", "4"), ("length", "4"), ("format", "float")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            f.read(&p).unwrap(),
            Value::Float(f64::from(std::f32::consts::PI))
        );
        let f = Field::from_attributes("d", &attrs(&[("offset", "7"), ("length", "2")]))
            .unwrap()
            .unwrap();
        assert_eq!(f.read(&p), Err(9));
    }

    #[test]
    fn bad_attributes_name_the_key() {
        let err = Field::from_attributes(
            "t",
            &attrs(&[("offset", "0"), ("length", "2"), ("endianness", "middle")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("endianness"), "{err}");
        assert_eq!(Field::from_attributes("t", &attrs(&[])).unwrap(), None);
        // Offsets past any LoRaWAN payload (issue 17: 242 crashed the
        // scheduler, one near usize::MAX the PUT handler).
        for offset in ["242", "18446744073709551615"] {
            let err = Field::from_attributes("t", &attrs(&[("offset", offset), ("length", "1")]))
                .unwrap_err();
            assert!(err.to_string().contains("offset"), "{err}");
        }
        assert!(Field::from_attributes("t", &attrs(&[("offset", "241"), ("length", "1")])).is_ok());
    }
}
