//! What a command answers, whichever transport asked: a status and the
//! EdgeX response DTO. REST sends it as the HTTP response; the message bus
//! wraps it in a response envelope (`errorCode` set when the status is not
//! a success).

use hyper::StatusCode;
use serde_json::json;

/// The EdgeX API version every DTO carries.
pub const API_VERSION: &str = "v3";

/// A status and the EdgeX response DTO to send with it.
pub type Answer = (StatusCode, serde_json::Value);

/// An EdgeX `ErrorResponse`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Answer {
    (
        status,
        json!({"apiVersion": API_VERSION, "statusCode": status.as_u16(), "message": message.to_string()}),
    )
}

/// An EdgeX `BaseResponse` with `fields` added (an object's members).
pub fn ok(status: StatusCode, fields: serde_json::Value) -> Answer {
    let mut body = json!({"apiVersion": API_VERSION, "statusCode": status.as_u16()});
    if let (Some(b), serde_json::Value::Object(f)) = (body.as_object_mut(), fields) {
        b.extend(f);
    }
    (status, body)
}
