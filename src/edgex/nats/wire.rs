//! How EdgeX's message bus looks on NATS (go-mod-messaging's `nats` and
//! `jetstream` packages): topics become subjects (`/` → `.`, `+` → `*`,
//! `#` → `>`), a stream is named after its subject (`edgex.>` → `edgex`),
//! and in the default `nats` format a `MessageEnvelope`'s fields travel as
//! headers with its payload as the body. Also what JetStream answers a
//! publish with. No I/O here.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// EdgeX's topic as a NATS subject.
pub fn subject(topic: &str) -> String {
    into_subject(topic.to_owned())
}

/// [`subject`] in place (per event: no second allocation).
pub fn into_subject(topic: String) -> String {
    let mut b = topic.into_bytes();
    for c in &mut b {
        *c = match *c {
            b'/' => b'.',
            b'+' => b'*',
            b'#' => b'>',
            x => x,
        };
    }
    String::from_utf8(b).expect("ASCII replaced by ASCII")
}

/// A NATS subject as EdgeX's topic (what a subscriber reports it received).
pub fn topic(subject: &str) -> String {
    subject
        .chars()
        .map(|c| match c {
            '.' => '/',
            '*' => '+',
            '>' => '#',
            c => c,
        })
        .collect()
}

/// The stream EdgeX auto-provisions for a subject: `.` → `_`, wildcards
/// dropped, no trailing `_` (`edgex.>` → `edgex`).
pub fn stream_name(subject: &str) -> String {
    let s: String = subject
        .chars()
        .filter(|c| *c != '*' && *c != '>')
        .map(|c| if c == '.' { '_' } else { c })
        .collect();
    s.trim_end_matches('_').to_owned()
}

/// The headers EdgeX's `nats` format puts an envelope's fields in.
pub const CONTENT_TYPE: &str = "Content-Type";
pub const CORRELATION_ID: &str = "X-Correlation-ID";
pub const REQUEST_ID: &str = "RequestId";
pub const API_VERSION: &str = "ApiVersion";
pub const ERROR_CODE: &str = "ErrorCode";
pub const QUERY_PARAMS: &str = "QueryParams";
/// JetStream keeps one message per id within the stream's duplicate window.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// NATS headers, in order.
pub type Headers = Vec<(String, String)>;

/// A `MessageEnvelope` (JSON, as the rest of the service reads and writes
/// it) split into `nats`-format headers and body. `None` if it is not one.
pub fn split_envelope(envelope: &[u8]) -> Option<(Headers, Vec<u8>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Env {
        #[serde(default)]
        api_version: String,
        #[serde(rename = "correlationID", default)]
        correlation_id: String,
        #[serde(rename = "requestID", default)]
        request_id: String,
        #[serde(default)]
        error_code: i64,
        #[serde(default)]
        content_type: String,
        #[serde(default)]
        payload: Value,
    }
    let e: Env = serde_json::from_slice(envelope).ok()?;
    let body = match e.payload {
        Value::Null => Vec::new(),
        // Go marshals []byte as base64: the bytes themselves go on NATS.
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(&s)
            .unwrap_or_else(|_| s.into_bytes()),
        v => serde_json::to_vec(&v).ok()?,
    };
    let headers = vec![
        (CORRELATION_ID.into(), e.correlation_id),
        (CONTENT_TYPE.into(), e.content_type),
        (REQUEST_ID.into(), e.request_id),
        (API_VERSION.into(), e.api_version),
        (ERROR_CODE.into(), e.error_code.to_string()),
    ];
    Some((headers, body))
}

/// A `nats`-format message put back together as the JSON envelope the
/// request handlers read: a JSON body is embedded, anything else base64.
pub fn join_envelope(msg: &super::proto::Msg) -> Vec<u8> {
    let h = |k| msg.header(k).unwrap_or_default();
    let payload = serde_json::from_slice::<Value>(&msg.payload).unwrap_or_else(|_| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(&msg.payload))
    });
    let query: serde_json::Map<String, Value> = msg
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(QUERY_PARAMS))
        .filter_map(|(_, v)| v.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), Value::String(v.trim().to_owned())))
        .collect();
    let env = serde_json::json!({
        "apiVersion": h(API_VERSION),
        "receivedTopic": topic(&msg.subject),
        "correlationID": h(CORRELATION_ID),
        "requestID": h(REQUEST_ID),
        "errorCode": h(ERROR_CODE).parse::<i64>().unwrap_or(0),
        "contentType": h(CONTENT_TYPE),
        "queryParams": query,
        "payload": payload,
    });
    serde_json::to_vec(&env).expect("JSON")
}

/// What JetStream answers a publish with.
#[derive(Debug, PartialEq)]
pub enum PubAck {
    Stored {
        duplicate: bool,
    },
    /// Not stored: the stream refused it or is not available (no stream
    /// for the subject, no leader yet).
    Failed(String),
}

impl PubAck {
    /// The answer in `msg` (a JSON body, or a status header such as 503,
    /// "no responders": no stream takes the subject).
    pub fn read(msg: &super::proto::Msg) -> Self {
        #[derive(Deserialize)]
        struct Ack {
            #[serde(default)]
            stream: Option<String>,
            #[serde(default)]
            duplicate: bool,
            #[serde(default)]
            error: Option<ApiError>,
        }
        if msg.status >= 300 {
            let why = if msg.status == 503 {
                "no stream takes this subject (503 no responders)".to_owned()
            } else {
                format!("status {}", msg.status)
            };
            return Self::Failed(why);
        }
        match serde_json::from_slice::<Ack>(&msg.payload) {
            Ok(Ack { error: Some(e), .. }) => Self::Failed(e.to_string()),
            Ok(Ack {
                stream: Some(_),
                duplicate,
                ..
            }) => Self::Stored { duplicate },
            _ => Self::Failed(format!(
                "unreadable acknowledgement: {}",
                String::from_utf8_lossy(&msg.payload[..msg.payload.len().min(120)])
            )),
        }
    }
}

/// A JetStream API error (`{"code":503,"err_code":10039,"description":...}`).
#[derive(Debug, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub err_code: u32,
    #[serde(default)]
    pub description: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}/{})", self.description, self.code, self.err_code)
    }
}

/// The JetStream API call creating the stream named after `subject`.
pub fn create_stream(subject: &str, replicas: u8) -> (String, Vec<u8>) {
    let name = stream_name(subject);
    let body = serde_json::json!({
        "name": name, "subjects": [subject], "retention": "limits",
        "storage": "file", "num_replicas": replicas, "discard": "old",
        // Two minutes, as JetStream's default: longer than any redelivery.
        "duplicate_window": 120_000_000_000u64,
    });
    (
        format!("$JS.API.STREAM.CREATE.{name}"),
        serde_json::to_vec(&body).expect("JSON"),
    )
}

/// The answer to [`create_stream`]: `Ok` when the stream is there (made
/// now, or already: JetStream's error 10058, "stream name already in use").
pub fn stream_created(payload: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        error: Option<ApiError>,
    }
    match serde_json::from_slice::<Answer>(payload) {
        Ok(Answer { error: None }) => Ok(()),
        Ok(Answer { error: Some(e) }) if e.err_code == 10058 => Ok(()),
        Ok(Answer { error: Some(e) }) => Err(e.to_string()),
        Err(e) => Err(format!("unreadable answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::Msg;
    use super::*;

    fn msg(status: u16, payload: &str) -> Msg {
        Msg {
            subject: "_INBOX.x.1".into(),
            sid: 1,
            reply: None,
            status,
            headers: vec![],
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn names_follow_go_mod_messaging() {
        assert_eq!(
            subject("edgex/events/device/svc/Mote%20A/m1/up"),
            "edgex.events.device.svc.Mote%20A.m1.up"
        );
        assert_eq!(
            subject("edgex/system-events/+/x/#"),
            "edgex.system-events.*.x.>"
        );
        assert_eq!(topic("edgex.a.*.>"), "edgex/a/+/#");
        assert_eq!(stream_name("edgex.>"), "edgex");
        assert_eq!(stream_name("edgex.events.*.x"), "edgex_events__x");
    }

    #[test]
    fn acknowledgements_are_read() {
        assert_eq!(
            PubAck::read(&msg(0, r#"{"stream":"edgex","seq":7}"#)),
            PubAck::Stored { duplicate: false }
        );
        assert_eq!(
            PubAck::read(&msg(0, r#"{"stream":"edgex","seq":7,"duplicate":true}"#)),
            PubAck::Stored { duplicate: true }
        );
        assert!(
            matches!(PubAck::read(&msg(503, "")), PubAck::Failed(w) if w.contains("no responders"))
        );
        assert!(matches!(
            PubAck::read(&msg(0, r#"{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}"#)),
            PubAck::Failed(w) if w.contains("temporarily")
        ));
        assert!(matches!(
            PubAck::read(&msg(0, "garbage")),
            PubAck::Failed(_)
        ));
    }

    #[test]
    fn an_envelope_splits_into_headers_and_body_and_back() {
        let env = br#"{"apiVersion":"v3","correlationID":"c1","requestID":"r1","errorCode":0,"contentType":"application/json","payload":{"a":1}}"#;
        let (headers, body) = split_envelope(env).unwrap();
        assert_eq!(body, br#"{"a":1}"#);
        let m = Msg {
            subject: "edgex.response.svc.r1".into(),
            sid: 2,
            reply: None,
            status: 0,
            headers: headers
                .into_iter()
                .chain([(QUERY_PARAMS.into(), "ds-pushevent: true".into())])
                .collect(),
            payload: body,
        };
        let back: Value = serde_json::from_slice(&join_envelope(&m)).unwrap();
        assert_eq!(back["requestID"], "r1");
        assert_eq!(back["correlationID"], "c1");
        assert_eq!(back["payload"]["a"], 1);
        assert_eq!(back["receivedTopic"], "edgex/response/svc/r1");
        assert_eq!(back["queryParams"]["ds-pushevent"], "true");
        assert!(split_envelope(b"not json").is_none());
    }

    #[test]
    fn an_existing_stream_is_fine() {
        assert_eq!(
            stream_created(
                br#"{"type":"io.nats.jetstream.api.v1.stream_create_response","config":{}}"#
            ),
            Ok(())
        );
        assert_eq!(stream_created(br#"{"error":{"code":400,"err_code":10058,"description":"stream name already in use"}}"#), Ok(()));
        assert!(stream_created(
            br#"{"error":{"code":500,"err_code":10049,"description":"insufficient resources"}}"#
        )
        .is_err());
        let (subject, body) = create_stream("edgex.>", 3);
        assert_eq!(subject, "$JS.API.STREAM.CREATE.edgex");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("\"num_replicas\":3"));
    }
}
