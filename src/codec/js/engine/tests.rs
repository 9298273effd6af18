use super::*;
use crate::codec::js::*;
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
    let e = c.decode(&[1], 9, 0.0, "{}").unwrap_err();
    assert!(matches!(e, JsError::Budget { ms: 20, .. }), "{e}");
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

#[test]
fn a_codecs_global_state_never_carries_from_one_call_to_the_next() {
    // A vendor's habit: a module-level counter and cache, and a sloppy
    // global made by assignment. Shared by a profile's devices, the output
    // would depend on another device's frame.
    let c = load(
        "var frames = 0; var cache = {}; let seenBytes = [];
         function decodeUplink(i) {
           frames++; seenBytes.push(i.bytes[0]);
           if (cache.last === undefined) cache.last = i.bytes[0];
           if (typeof implicit === 'undefined') implicit = 0;
           implicit++;
           return { data: { frames: frames, first: cache.last, seen: seenBytes.length, implicit: implicit } };
         }",
    )
    .unwrap();
    for b in [7u8, 9, 11] {
        assert_eq!(
            c.decode(&[b], 1, 0.0, "{}").unwrap().data,
            json!({"frames": 1, "first": b, "seen": 1, "implicit": 1}),
            "whatever came before"
        );
    }
    // The implicit global is gone after the call.
    let probe = load("function decodeUplink(i) { if (i.fPort === 2) leak = 5; return { data: { t: typeof leak } }; }").unwrap();
    probe.decode(&[], 2, 0.0, "{}").unwrap();
    assert_eq!(
        probe.decode(&[], 1, 0.0, "{}").unwrap().data,
        json!({"t": "undefined"})
    );
}

#[test]
fn legacy_entry_points_are_fallbacks() {
    // TTN v2.
    let c = load(
        "function Decoder(bytes, port) { return { b0: bytes[0], port: port }; }
         function Encoder(object, port) { return [object.v, port]; }",
    )
    .unwrap();
    assert!(c.has_encoder);
    assert_eq!(
        c.decode(&[5], 3, 0.0, "{}").unwrap().data,
        json!({"b0": 5, "port": 3})
    );
    assert_eq!(
        c.encode(&json!({"v": 9}), "{}").unwrap(),
        (vec![9, LEGACY_ENCODER_FPORT], LEGACY_ENCODER_FPORT)
    );
    // ChirpStack v3.
    let c = load(
        "function Decode(fPort, bytes, variables) { return { port: fPort, n: bytes.length, site: variables.site }; }
         function Encode(fPort, obj, variables) { return [obj.v + 1]; }",
    )
    .unwrap();
    assert_eq!(
        c.decode(&[1, 2], 4, 0.0, r#"{"site":"x"}"#).unwrap().data,
        json!({"port": 4, "n": 2, "site": "x"})
    );
    assert_eq!(
        c.encode(&json!({"v": 1}), "{}").unwrap(),
        (vec![2], LEGACY_ENCODER_FPORT)
    );
    // TS013 wins when both are there; no decoder at all is a load error.
    let c = load(
        "function decodeUplink(i) { return { data: { via: 'ts013' } }; } function Decoder() { return { via: 'v2' }; }",
    )
    .unwrap();
    assert_eq!(
        c.decode(&[], 1, 0.0, "{}").unwrap().data,
        json!({"via": "ts013"})
    );
    assert!(!c.has_encoder);
    let e = load("function Encoder(o, p) { return []; }").unwrap_err();
    assert!(e.to_string().contains("decodeUplink"), "{e}");
}

#[test]
fn buffer_as_node_and_chirpstack_give_it() {
    let c = load(
        r#"function decodeUplink(i) {
          var b = Buffer.from(i.bytes);
          var w = Buffer.alloc(8);
          w.writeDoubleBE(-1.5, 0);
          var out = {
            isBuffer: Buffer.isBuffer(b),
            u8: b.readUInt8(0), i8: b.readInt8(0),
            u16be: b.readUInt16BE(0), i16le: b.readInt16LE(0), u16: b.readUint16LE(1),
            u32be: b.readUInt32BE(0), i32le: b.readInt32LE(0),
            f32le: Buffer.from("0000c03f", "hex").readFloatLE(0),
            dbl: w.readDoubleBE(0), wrote: w.toString("hex"),
            u24: b.readUIntBE(1, 3), i24: b.readIntLE(0, 3),
            hex: b.toString("hex"), b64: b.toString("base64"),
            fromB64: Buffer.from("aGk=", "base64").toString(),
            utf8: Buffer.from("é€😀").toString("hex"),
            back: Buffer.from("c3a9e282ac", "hex").toString("utf8"),
            slice: b.slice(1, 3).toString("hex"),
            concat: Buffer.concat([b.slice(0, 1), Buffer.from([0xaa])]).toString("hex"),
            json: JSON.stringify(Buffer.from([1, 2])),
          };
          try { b.readUInt32LE(2); out.range = "none"; } catch (e) { out.range = e.name; }
          return { data: out };
        }"#,
    )
    .unwrap();
    let d = c
        .decode(&[0xfe, 0x01, 0x02, 0x03, 0x04], 1, 0.0, "{}")
        .unwrap()
        .data;
    assert_eq!(
        d,
        json!({
            "isBuffer": true, "u8": 254, "i8": -2,
            "u16be": 0xfe01, "i16le": 0x01fe, "u16": 0x0201,
            "u32be": 0xfe01_0203u32, "i32le": 0x0302_01fe,
            "f32le": 1.5, "dbl": -1.5, "wrote": "bff8000000000000",
            "u24": 0x010203, "i24": 0x0201fe,
            "hex": "fe01020304", "b64": "/gECAwQ=",
            "fromB64": "hi", "utf8": "c3a9e282acf09f9880", "back": "é€",
            "slice": "0102", "concat": "feaa",
            "json": r#"{"type":"Buffer","data":[1,2]}"#,
            "range": "RangeError",
        })
    );
}

#[test]
fn console_goes_to_the_log_rate_limited() {
    let c = load(
        "function decodeUplink(i) { for (var k = 0; k < i.bytes[0]; k++) console.log('frame', k, { b: i.bytes }); console.warn('done'); return { data: {} }; }",
    )
    .unwrap();
    c.decode(&[3], 1, 0.0, "{}").unwrap();
    assert_eq!(c.console_lines(), (4, 4));
    c.decode(&[30], 1, 0.0, "{}").unwrap();
    assert_eq!(
        c.console_lines(),
        (35, CONSOLE_LINES_A_MINUTE),
        "counted, not all logged"
    );
}

#[test]
fn a_value_that_needs_17_digits_comes_out_exact() {
    let c = load(
        "function decodeUplink(i) { return { data: { a: 0.1 + 0.2, b: 1 / 3, c: 123456.78901234567, d: 5e-324, e: 1.7976931348623157e308, f: 2.2250738585072014e-308, g: 9007199254740993, h: 0.10001230000000001, i: 0.10003720455118613 } }; }",
    )
    .unwrap();
    let d = c.decode(&[], 1, 0.0, "{}").unwrap().data;
    let want = [
        ("a", 0.1 + 0.2),
        ("b", 1.0 / 3.0),
        ("c", 123456.78901234567),
        ("d", 5e-324),
        ("e", f64::MAX),
        ("f", 2.2250738585072014e-308),
        ("g", 9007199254740992.0),
        // These two lose their last bit without serde_json's float_roundtrip.
        ("h", 0.10001230000000001),
        ("i", 0.10003720455118613),
    ];
    for (k, v) in want {
        assert_eq!(
            d[k].as_f64().unwrap().to_bits(),
            v.to_bits(),
            "{k}: {}",
            d[k]
        );
    }
}

#[test]
fn the_budget_is_cpu_time_not_wall_clock_time() {
    let c = load(
        "function decodeUplink(i) { wait(); wait(); var s = 0; for (var k = 0; k < 200000; k++) s += k; return { data: { s: s } }; }",
    )
    .unwrap();
    // A host call that takes wall-clock time without CPU, as a thread that
    // waits for a core on a busy machine does: 60 ms against a 20 ms budget.
    c.context.with(|ctx| {
        let wait = Function::new(ctx.clone(), || {
            std::thread::sleep(Duration::from_millis(30))
        })
        .unwrap();
        ctx.globals().set("wait", wait).unwrap();
    });
    // (`wait` came after the snapshot of globals: this call deletes it.)
    assert_eq!(
        c.decode(&[], 1, 0.0, "{}").unwrap().data,
        json!({"s": 19_999_900_000u64})
    );
}
