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

/// Why a request is refused, by kind: what every transport answers with.
/// [`Refusal::status`] is the one table from kinds to EdgeX's status codes
/// (REST sends it, the bus's envelope carries it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such device, command, resource, secret or route.
    NotFound,
    /// The request does not read (a DTO, a value, a name's encoding).
    BadRequest,
    /// The route exists, the method does not (or the command is not
    /// readable/writable).
    NotAllowed,
    /// The device is administratively LOCKED.
    Locked,
    /// The request conflicts with how this service is set up.
    Conflict,
    /// A feature that is off (discovery, downlinks).
    Unavailable,
    /// EdgeX routes this service does not implement (profile scanning).
    NotImplemented,
    /// No valid credential (bearer token, EdgeX JWT).
    Unauthorised,
    /// A body larger than the API takes.
    TooLarge,
    /// A body that did not arrive in time.
    Timeout,
    /// This service failed (a store, the pipeline stopping).
    Internal,
}

impl Refusal {
    /// The status code each kind is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::NotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Locked => StatusCode::LOCKED,
            Refusal::Conflict => StatusCode::CONFLICT,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Refusal::Unauthorised => StatusCode::UNAUTHORIZED,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An EdgeX `ErrorResponse` for a refusal of kind `kind`.
pub fn refuse(kind: Refusal, message: impl std::fmt::Display) -> Answer {
    let status = kind.status();
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
