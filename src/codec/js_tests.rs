use super::*;
use serde_json::json;

/// A codec in the style vendors write them.
const CLIMATE: &str = r#"
// Climate sensor: fPort 1 readings, fPort 2 settings.
function s16(hi, lo) { var v = (hi << 8) | lo; return v & 0x8000 ? v - 0x10000 : v; }
function decodeUplink(input) {
  var b = input.bytes;
  if (input.fPort === 1) {
    if (b.length < 7) return { errors: ["payload too short: " + b.length + " bytes"] };
    return {
      data: {
        temperature: s16(b[0], b[1]) / 10,
        humidity: b[2] / 2,
        battery: { voltage: ((b[3] << 8) | b[4]) / 1000, low: (b[5] & 0x80) !== 0 },
        status: b[6] & 0x0f,
        site: input.variables.site,
      },
      warnings: b[6] & 0x10 ? ["sensor warming up"] : [],
    };
  }
  if (input.fPort === 2) return { data: { interval: (b[0] << 8) | b[1] } };
  return { errors: ["unknown fPort " + input.fPort] };
}
function encodeDownlink(input) {
  if (input.data.interval === undefined) return { errors: ["interval missing"] };
  var v = input.data.interval;
  return { bytes: [(v >> 8) & 0xff, v & 0xff], fPort: 2 };
}
"#;

fn load(src: &str) -> Result<JsCodec, JsError> {
    JsCodec::load(
        Path::new("profiles/Test.js"),
        src,
        DEFAULT_BUDGET,
        DEFAULT_MEMORY,
    )
}

#[test]
fn decodes_encodes_and_passes_variables() {
    let c = load(CLIMATE).unwrap();
    assert!(c.has_encoder);
    let d = c
        .decode(
            &[0xff, 0x38, 90, 0x0c, 0xe4, 0x80, 0x13],
            1,
            0.0,
            r#"{"site":"roof"}"#,
        )
        .unwrap();
    assert_eq!(
        d.data,
        json!({"temperature": -20, "humidity": 45, "battery": {"voltage": 3.3, "low": true}, "status": 3, "site": "roof"})
    );
    assert_eq!(d.warnings, ["sensor warming up"]);
    assert!(d.errors.is_empty());
    let d = c.decode(&[1, 2], 1, 0.0, "{}").unwrap();
    assert_eq!(d.errors, ["payload too short: 2 bytes"]);
    assert_eq!(
        c.encode(&json!({"interval": 300}), "{}").unwrap(),
        (vec![1, 44], 2)
    );
    assert!(
        matches!(c.encode(&json!({}), "{}"), Err(JsError::Output { message, .. }) if message == "interval missing")
    );
}

#[test]
fn a_looping_codec_is_stopped_and_works_again() {
    let c = load("function decodeUplink(i) { if (i.fPort === 9) { while (true) {} } return { data: { n: i.bytes.length } }; }").unwrap();
    let t = Instant::now();
    let e = c.decode(&[1], 9, 0.0, "{}").unwrap_err();
    assert!(matches!(e, JsError::Budget { ms: 20, .. }), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stopped near its budget"
    );
    assert!(e.to_string().contains("profiles/Test.js"));
    assert_eq!(
        c.decode(&[1, 2], 1, 0.0, "{}").unwrap().data,
        json!({"n": 2})
    );
}

#[test]
fn a_codec_that_allocates_without_end_is_stopped_and_works_again() {
    let c = JsCodec::load(
        Path::new("grow.js"),
        "function decodeUplink(i) { if (i.fPort === 9) { var a = []; for (;;) a.push('x'.repeat(1000) + a.length); } return { data: { ok: true } }; }",
        Duration::from_secs(5),
        8 << 20,
    )
    .unwrap();
    let e = c.decode(&[1], 9, 0.0, "{}").unwrap_err();
    assert!(matches!(e, JsError::Memory { mb: 8, .. }), "{e}");
    assert_eq!(
        c.decode(&[1], 1, 0.0, "{}").unwrap().data,
        json!({"ok": true})
    );
}

#[test]
fn a_throwing_codec_says_what_it_threw() {
    let c = load("function decodeUplink(i) { if (i.fPort === 9) throw new RangeError('bad byte ' + i.bytes[0]); return { data: {} }; }").unwrap();
    let e = c.decode(&[7], 9, 0.0, "{}").unwrap_err();
    assert_eq!(
        e,
        JsError::Threw {
            file: "profiles/Test.js".into(),
            message: "RangeError: bad byte 7".into()
        }
    );
    assert!(c.decode(&[7], 1, 0.0, "{}").is_ok());
}

#[test]
fn scripts_that_do_not_load_name_file_and_line() {
    let e =
        load("function decodeUplink(i) {\n  return {\n    data: { x: 1 \n  };\n}\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("codec profiles/Test.js: line "), "{text}");
    assert!(
        matches!(load("var x = 1;"), Err(JsError::Load { message, .. }) if message.contains("decodeUplink"))
    );
    // No module loader, no host objects: a sandbox.
    let c = load("function decodeUplink(i) { return { data: { r: typeof require, p: typeof process, s: typeof setTimeout, f: typeof fetch } }; }").unwrap();
    assert_eq!(
        c.decode(&[], 1, 0.0, "{}").unwrap().data,
        json!({"r": "undefined", "p": "undefined", "s": "undefined", "f": "undefined"})
    );
    let c = load("import * as os from 'os'; function decodeUplink(i) { return {}; }");
    assert!(c.is_err());
}

#[test]
fn results_that_are_not_objects_are_errors() {
    let c = load("function decodeUplink(i) { return i.fPort === 1 ? 42 : undefined; }").unwrap();
    assert!(matches!(
        c.decode(&[], 1, 0.0, "{}"),
        Err(JsError::Output { .. })
    ));
    assert!(matches!(
        c.decode(&[], 2, 0.0, "{}"),
        Err(JsError::Output { .. })
    ));
    let c = load("function decodeUplink(i) { return {data: {}}; } function encodeDownlink(i) { return { bytes: [300], fPort: 2 }; }").unwrap();
    assert!(matches!(
        c.encode(&json!({}), "{}"),
        Err(JsError::Output { .. })
    ));
}
