//! Why a payload, or a profile's codec attributes, could not be decoded:
//! one enum for every codec, each case with what names the fix.

use super::js;
use super::kind::CodecKind;
use super::value::{ValueError, ValueType};

/// Why a payload (or a profile's codec attributes) could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Clone)]
pub enum CodecError {
    #[error("payload truncated at byte {at}: need {need} bytes, have {have}")]
    Truncated { at: usize, need: usize, have: usize },
    #[error("unknown Cayenne LPP type {type_id} at byte {at}")]
    UnknownLppType { at: usize, type_id: u8 },
    #[error("resource {resource}: value is not a {expected:?}")]
    Type {
        resource: String,
        expected: ValueType,
    },
    #[error("resource {resource}: {value} is not an integer")]
    NotIntegral { resource: String, value: f64 },
    #[error("resource {resource}: {value} does not fit {value_type:?}")]
    OutOfRange {
        resource: String,
        value: f64,
        value_type: ValueType,
    },
    #[error("resource {resource}: layout needs {need} bytes, payload has {have}")]
    LayoutOverrun {
        resource: String,
        need: usize,
        have: usize,
    },
    #[error("resource {resource}: attribute {key}: {message}")]
    Attribute {
        resource: String,
        key: String,
        message: String,
    },
    #[error("profile {profile} has no resource the {codec:?} codec can fill")]
    NothingToDecode { profile: String, codec: CodecKind },
    #[error("profile {profile} has no {profile}.js codec script beside it")]
    NoScript { profile: String },
    #[error("{0}")]
    Script(#[from] js::JsError),
    /// The codec's `errors`: it refused the payload.
    #[error("codec {file}: {message}")]
    Refused { file: String, message: String },
}

impl ValueError {
    pub fn at(self, resource: &str, vt: ValueType) -> CodecError {
        let resource = resource.to_string();
        match self {
            ValueError::Type => CodecError::Type {
                resource,
                expected: vt,
            },
            ValueError::NotIntegral(value) => CodecError::NotIntegral { resource, value },
            ValueError::OutOfRange(value) => CodecError::OutOfRange {
                resource,
                value,
                value_type: vt,
            },
        }
    }
}
