//! Reading values typed as EdgeX types them, the EdgeX transforms
//! (mask, shift, base, scale, offset, in device-sdk-go's order), and the
//! value strings EdgeX expects in a reading.

use serde::{Deserialize, Serialize};

/// EdgeX `valueType`s that a LoRaWAN uplink can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueType {
    Bool,
    String,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Binary,
    Object,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "Bool",
            Self::String => "String",
            Self::Uint8 => "Uint8",
            Self::Uint16 => "Uint16",
            Self::Uint32 => "Uint32",
            Self::Uint64 => "Uint64",
            Self::Int8 => "Int8",
            Self::Int16 => "Int16",
            Self::Int32 => "Int32",
            Self::Int64 => "Int64",
            Self::Float32 => "Float32",
            Self::Float64 => "Float64",
            Self::Binary => "Binary",
            Self::Object => "Object",
        }
    }

    fn int_range(self) -> Option<(f64, f64)> {
        Some(match self {
            Self::Uint8 => (0.0, u8::MAX as f64),
            Self::Uint16 => (0.0, u16::MAX as f64),
            Self::Uint32 => (0.0, u32::MAX as f64),
            Self::Uint64 => (0.0, u64::MAX as f64),
            Self::Int8 => (i8::MIN as f64, i8::MAX as f64),
            Self::Int16 => (i16::MIN as f64, i16::MAX as f64),
            Self::Int32 => (i32::MIN as f64, i32::MAX as f64),
            Self::Int64 => (i64::MIN as f64, i64::MAX as f64),
            _ => return None,
        })
    }

    pub fn is_unsigned(self) -> bool {
        matches!(
            self,
            Self::Uint8 | Self::Uint16 | Self::Uint32 | Self::Uint64
        )
    }
}

/// One decoded value. Numbers stay unboxed: no allocation except for the
/// raw codecs' text and bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Uint(u64),
    Int(i64),
    Float(f64),
    Text(String),
    Binary(Vec<u8>),
}

impl Value {
    /// The value string of an EdgeX reading: floats in Go's `%e` shortest
    /// form (`2.72e+01`), as device-sdk-go writes them.
    pub fn to_edgex_string(&self, vt: ValueType) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Uint(u) => u.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) if vt == ValueType::Float32 => {
                go_e_notation(&format!("{:e}", *f as f32))
            }
            Value::Float(f) => go_e_notation(&format!("{f:e}")),
            Value::Text(s) => s.clone(),
            Value::Binary(b) => hex::encode(b),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Uint(u) => Some(u as f64),
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            Value::Bool(b) => Some(f64::from(u8::from(b))),
            _ => None,
        }
    }
}

/// Rust's `1.5e1` → Go's `1.5e+01`.
fn go_e_notation(rust: &str) -> String {
    let (mant, exp) = rust.split_once('e').unwrap_or((rust, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mant}e{sign}{digits:0>2}")
}

/// A resource's EdgeX read transforms and value type, compiled once per
/// profile so the per-value work is a few float ops on a small `Copy` value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    vt: ValueType,
    mask: Option<u64>,
    shift: Option<i64>,
    base: Option<f64>,
    scale: Option<f64>,
    offset: Option<f64>,
}

/// What went wrong with one value; the resource name is attached by the
/// caller, off the hot path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueError {
    Type,
    NotIntegral(f64),
    OutOfRange(f64),
}

impl Transform {
    /// The device-sdk's transforms, applied in its order: mask, shift,
    /// base, scale, offset. A zero shift or base is none.
    pub fn new(
        vt: ValueType,
        mask: Option<u64>,
        shift: Option<i64>,
        base: Option<f64>,
        scale: Option<f64>,
        offset: Option<f64>,
    ) -> Self {
        Self {
            vt,
            mask,
            shift: shift.filter(|s| *s != 0),
            base: base.filter(|b| *b != 0.0),
            scale,
            offset,
        }
    }

    pub fn value_type(&self) -> ValueType {
        self.vt
    }

    /// A float resource with no transforms: the value passes through as is
    /// (the common LPP case, worth skipping the general path for).
    pub fn is_plain_float(&self) -> bool {
        matches!(self.vt, ValueType::Float32 | ValueType::Float64)
            && self.base.is_none()
            && self.scale.is_none()
            && self.offset.is_none()
    }

    /// Apply the EdgeX read transforms to a raw number and type the result
    /// as the resource says. Mask and shift act on unsigned integers only
    /// (as in device-sdk-go v4); base, scale and offset on any number. An
    /// integer resource must end up with an integral value in its range.
    #[inline]
    pub fn apply(&self, raw: Value) -> Result<Value, ValueError> {
        let vt = self.vt;
        let mut v = raw;
        if let Value::Uint(mut u) = v {
            if vt.is_unsigned() {
                if let Some(mask) = self.mask {
                    u &= mask;
                }
                match self.shift {
                    Some(s) if s > 0 => u = u.checked_shl(s as u32).unwrap_or(0),
                    Some(s) => u = u.checked_shr(s.unsigned_abs() as u32).unwrap_or(0),
                    None => {}
                }
            }
            v = Value::Uint(u);
        }
        if self.base.is_some() || self.scale.is_some() || self.offset.is_some() {
            let mut f = v.as_f64().ok_or(ValueError::Type)?;
            if let Some(b) = self.base {
                f = b.powf(f);
            }
            if let Some(s) = self.scale {
                f *= s;
            }
            if let Some(o) = self.offset {
                f += o;
            }
            v = Value::Float(f);
        }
        coerce(v, vt)
    }
}

/// Convert a number to a value type, checking range.
#[inline]
pub fn coerce(v: Value, vt: ValueType) -> Result<Value, ValueError> {
    match vt {
        ValueType::Float32 | ValueType::Float64 => {
            v.as_f64().map(Value::Float).ok_or(ValueError::Type)
        }
        ValueType::Bool => v
            .as_f64()
            .map(|f| Value::Bool(f != 0.0))
            .ok_or(ValueError::Type),
        _ => {
            let Some((lo, hi)) = vt.int_range() else {
                return Ok(v);
            };
            let f = v.as_f64().ok_or(ValueError::Type)?;
            // Round away float noise from scale (0.1 * 10 = 1.0000000000000002).
            let r = f.round();
            if (f - r).abs() > 1e-9 * r.abs().max(1.0) {
                return Err(ValueError::NotIntegral(f));
            }
            if r < lo || r > hi {
                return Err(ValueError::OutOfRange(f));
            }
            Ok(match (v, vt.is_unsigned()) {
                (Value::Uint(u), true) => Value::Uint(u),
                (Value::Int(i), false) => Value::Int(i),
                (_, true) => Value::Uint(r as u64),
                (_, false) => Value::Int(r as i64),
            })
        }
    }
}

/// One decoded reading: an index into the profile's resources and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub resource: u16,
    pub value: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_strings_follow_go() {
        assert_eq!(
            Value::Float(27.2).to_edgex_string(ValueType::Float64),
            "2.72e+01"
        );
        assert_eq!(
            Value::Float(0.001).to_edgex_string(ValueType::Float64),
            "1e-03"
        );
        assert_eq!(
            Value::Float(27.2).to_edgex_string(ValueType::Float32),
            "2.72e+01"
        );
        assert_eq!(
            Value::Float(-87.9094).to_edgex_string(ValueType::Float64),
            "-8.79094e+01"
        );
    }
}
