//! The NATS client protocol, without I/O: what we write (`CONNECT`, `SUB`,
//! `PUB`/`HPUB`, `PING`/`PONG`) and an incremental reader of what a server
//! sends (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`), as the NATS
//! client protocol reference defines them. The connection task feeds bytes
//! in and acts on the [`ServerOp`]s that come out.
//!
//! Sizes are checked before anything is buffered: a control line longer
//! than [`MAX_CONTROL_LINE`] or a message larger than the `max_payload` the
//! server announced is a [`ProtoError`], not an allocation.

use serde::Deserialize;

/// Longest control line we accept (the server's own default limit is 4 KiB).
pub const MAX_CONTROL_LINE: usize = 4096;

/// A server's `INFO`, the fields we use.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Info {
    #[serde(default)]
    pub server_id: String,
    #[serde(default)]
    pub headers: bool,
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// Other servers of the cluster clients may connect to (`host:port`).
    #[serde(default)]
    pub connect_urls: Vec<String>,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub auth_required: bool,
}

fn default_max_payload() -> usize {
    1 << 20
}

/// One message delivered to a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub subject: String,
    pub sid: u64,
    pub reply: Option<String>,
    /// The status of a header block (`NATS/1.0 503`): 0 without one.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Msg {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerOp {
    Info(Box<Info>),
    Msg(Msg),
    Ping,
    Pong,
    Ok,
    Err(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtoError {
    #[error("control line longer than {MAX_CONTROL_LINE} bytes")]
    LineTooLong,
    #[error("message of {size} bytes over the server's limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("unknown operation {0:?}")]
    Unknown(String),
    #[error("malformed {op}: {why}")]
    Malformed { op: &'static str, why: String },
}

fn malformed(op: &'static str, why: impl Into<String>) -> ProtoError {
    ProtoError::Malformed {
        op,
        why: why.into(),
    }
}

/// Reads server operations out of the bytes as they arrive.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// How much of `buf` is read already (dropped at the next feed, so a
    /// read of many small operations moves the rest once, not per op).
    pos: usize,
    max_payload: usize,
}

impl Reader {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            pos: 0,
            max_payload: default_max_payload(),
        }
    }

    /// Bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete operation, `None` until more bytes are needed.
    pub fn next_op(&mut self) -> Result<Option<ServerOp>, ProtoError> {
        let buf = &self.buf[self.pos..];
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            if buf.len() > MAX_CONTROL_LINE {
                return Err(ProtoError::LineTooLong);
            }
            return Ok(None);
        };
        if eol > MAX_CONTROL_LINE {
            return Err(ProtoError::LineTooLong);
        }
        let line = std::str::from_utf8(&buf[..eol])
            .map_err(|_| malformed("control line", "not UTF-8"))?
            .to_owned();
        let (op, args) = line.split_once([' ', '\t']).unwrap_or((&line, ""));
        let args = args.trim();
        let op = match op.to_ascii_uppercase().as_str() {
            "PING" => ServerOp::Ping,
            "PONG" => ServerOp::Pong,
            "+OK" => ServerOp::Ok,
            "-ERR" => ServerOp::Err(args.trim_matches('\'').to_owned()),
            "INFO" => {
                let info: Info =
                    serde_json::from_str(args).map_err(|e| malformed("INFO", e.to_string()))?;
                self.max_payload = info.max_payload.max(1024);
                ServerOp::Info(Box::new(info))
            }
            "MSG" => return self.message(eol, args, false),
            "HMSG" => return self.message(eol, args, true),
            other => return Err(ProtoError::Unknown(other.chars().take(16).collect())),
        };
        self.pos += eol + 2;
        Ok(Some(op))
    }

    /// `MSG <subject> <sid> [reply] <#bytes>` or
    /// `HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>`.
    fn message(
        &mut self,
        eol: usize,
        args: &str,
        headed: bool,
    ) -> Result<Option<ServerOp>, ProtoError> {
        let op = if headed { "HMSG" } else { "MSG" };
        let f: Vec<&str> = args.split_ascii_whitespace().collect();
        let sizes = if headed { 2 } else { 1 };
        if f.len() != 2 + sizes && f.len() != 3 + sizes {
            return Err(malformed(op, format!("{} fields", f.len())));
        }
        let num = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| malformed(op, format!("{s:?} is not a size")))
        };
        let total = num(f[f.len() - 1])?;
        let head = if headed { num(f[f.len() - 2])? } else { 0 };
        if head > total {
            return Err(malformed(op, "header bytes exceed the total"));
        }
        if total > self.max_payload + MAX_CONTROL_LINE {
            return Err(ProtoError::TooLarge {
                size: total,
                max: self.max_payload,
            });
        }
        let buf = &self.buf[self.pos..];
        let start = eol + 2;
        if buf.len() < start + total + 2 {
            return Ok(None);
        }
        if &buf[start + total..start + total + 2] != b"\r\n" {
            return Err(malformed(op, "payload not followed by CRLF"));
        }
        let sid = f[1]
            .parse()
            .map_err(|_| malformed(op, format!("sid {:?}", f[1])))?;
        let reply = (f.len() == 3 + sizes).then(|| f[2].to_owned());
        let (status, headers) = if headed {
            parse_headers(&buf[start..start + head])?
        } else {
            (0, Vec::new())
        };
        let msg = Msg {
            subject: f[0].to_owned(),
            sid,
            reply,
            status,
            headers,
            payload: buf[start + head..start + total].to_vec(),
        };
        self.pos += start + total + 2;
        Ok(Some(ServerOp::Msg(msg)))
    }
}

/// A header block: `NATS/1.0[ status[ description]]\r\n(Name: value\r\n)*\r\n`.
fn parse_headers(block: &[u8]) -> Result<(u16, Vec<(String, String)>), ProtoError> {
    let text = std::str::from_utf8(block).map_err(|_| malformed("headers", "not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let rest = first
        .strip_prefix("NATS/1.0")
        .ok_or_else(|| malformed("headers", "no NATS/1.0 version line"))?;
    let status = rest
        .split_ascii_whitespace()
        .next()
        .map(|s| s.parse().map_err(|_| malformed("headers", "bad status")))
        .transpose()?
        .unwrap_or(0);
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| malformed("headers", format!("line {l:?}")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok((status, headers))
}

/// What we say first: `CONNECT` with headers and no echo, then a `PING`
/// whose `PONG` confirms the server took it (errors come before it).
pub fn connect(name: &str, user: Option<(&str, &str)>) -> Vec<u8> {
    let mut c = serde_json::json!({
        "verbose": false, "pedantic": false, "tls_required": false,
        "name": name, "lang": "rust", "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1, "headers": true, "no_responders": true, "echo": false,
    });
    if let Some((u, p)) = user {
        c["user"] = u.into();
        c["pass"] = p.into();
    }
    format!("CONNECT {c}\r\nPING\r\n").into_bytes()
}

pub fn subscribe(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
}

/// `PUB`, or `HPUB` when there are headers, written straight into `out`.
pub fn publish(
    out: &mut Vec<u8>,
    subject: &str,
    reply: Option<&str>,
    headers: &[(&str, &str)],
    payload: &[u8],
) {
    use std::io::Write;
    let (sp, reply) = reply.map_or(("", ""), |r| (" ", r));
    if headers.is_empty() {
        let _ = write!(out, "PUB {subject}{sp}{reply} {}\r\n", payload.len());
    } else {
        const VERSION: &[u8] = b"NATS/1.0\r\n";
        let block = VERSION.len()
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + 2;
        let _ = write!(
            out,
            "HPUB {subject}{sp}{reply} {block} {}\r\n",
            block + payload.len()
        );
        out.extend_from_slice(VERSION);
        for (k, v) in headers {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Whether `s` can be published to: no whitespace, no empty token, no
/// wildcard token (`*`, `>`). A server answers anything else with `-ERR`.
pub fn clean(s: &str) -> bool {
    !s.bytes().any(|b| b.is_ascii_whitespace())
        && s.split('.').all(|t| !t.is_empty() && t != "*" && t != ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<ServerOp> {
        let mut r = Reader::new();
        r.feed(bytes);
        let mut out = Vec::new();
        while let Some(op) = r.next_op().unwrap() {
            out.push(op);
        }
        out
    }

    #[test]
    fn server_operations_are_read() {
        let ops = all(b"INFO {\"server_id\":\"N1\",\"headers\":true,\"max_payload\":1048576,\"connect_urls\":[\"127.0.0.1:4223\"]}\r\nPING\r\n+OK\r\n-ERR 'Authorization Violation'\r\nMSG a.b 7 6\r\nhello!\r\n");
        assert!(
            matches!(&ops[0], ServerOp::Info(i) if i.connect_urls == ["127.0.0.1:4223"] && i.headers)
        );
        assert_eq!(ops[1], ServerOp::Ping);
        assert_eq!(ops[2], ServerOp::Ok);
        assert_eq!(ops[3], ServerOp::Err("Authorization Violation".into()));
        let ServerOp::Msg(m) = &ops[4] else { panic!() };
        assert_eq!(
            (m.subject.as_str(), m.sid, m.reply.as_deref()),
            ("a.b", 7, None)
        );
        assert_eq!(m.payload, b"hello!");
    }

    #[test]
    fn a_message_split_anywhere_comes_out_once_whole() {
        let mut wire = Vec::new();
        publish(
            &mut wire,
            "x",
            None,
            &[("Content-Type", "application/json")],
            b"{}",
        );
        let wire = String::from_utf8(wire)
            .unwrap()
            .replacen("HPUB x", "HMSG x 3 _INBOX.a.1", 1);
        for cut in 0..wire.len() {
            let mut r = Reader::new();
            r.feed(&wire.as_bytes()[..cut]);
            assert_eq!(r.next_op().unwrap(), None, "cut at {cut}");
            r.feed(&wire.as_bytes()[cut..]);
            let Some(ServerOp::Msg(m)) = r.next_op().unwrap() else {
                panic!("cut at {cut}")
            };
            assert_eq!(m.header("content-type"), Some("application/json"));
            assert_eq!(m.reply.as_deref(), Some("_INBOX.a.1"));
            assert_eq!(m.payload, b"{}");
        }
    }

    #[test]
    fn a_status_header_is_read() {
        let ops = all(b"HMSG _INBOX.x.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
        let ServerOp::Msg(m) = &ops[0] else { panic!() };
        assert_eq!(m.status, 503);
        assert!(m.payload.is_empty());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b"BOGUS\r\n"[..],
            b"MSG a\r\n",
            b"MSG a 1 x\r\n",
            b"HMSG a 1 10 5\r\n",
            b"INFO {\r\n",
            b"MSG a 1 2\r\nabXY",
            b"HMSG a 1 4 4\r\nXXXX\r\n",
        ] {
            let mut r = Reader::new();
            r.feed(bad);
            assert!(r.next_op().is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut r = Reader::new();
        r.feed(&vec![b'x'; MAX_CONTROL_LINE + 1]);
        assert_eq!(r.next_op(), Err(ProtoError::LineTooLong));
        let mut r = Reader::new();
        r.feed(b"MSG a 1 99999999\r\n");
        assert!(matches!(r.next_op(), Err(ProtoError::TooLarge { .. })));
    }

    #[test]
    fn only_publishable_subjects_are_clean() {
        assert!(clean("edgex.events.device.svc.Mote%20A.m1.up"));
        for bad in ["", "a..b", "a.b.", "a.*.b", "a.>", "a b"] {
            assert!(!clean(bad), "{bad:?}");
        }
    }

    #[test]
    fn publishes_are_framed_as_the_protocol_says() {
        let mut out = Vec::new();
        publish(&mut out, "a.b", Some("r.1"), &[], b"hi");
        assert_eq!(out, b"PUB a.b r.1 2\r\nhi\r\n");
        out.clear();
        publish(&mut out, "a.b", None, &[("K", "v")], b"hi");
        assert_eq!(out, b"HPUB a.b 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n");
        let c = String::from_utf8(connect("svc", Some(("u", "p")))).unwrap();
        assert!(c.starts_with("CONNECT {") && c.ends_with("}\r\nPING\r\n"));
        assert!(c.contains("\"headers\":true") && c.contains("\"user\":\"u\""));
    }
}
