//! JavaScript codecs: decode throughput of a realistic 10-field codec on
//! one core, against the same codec with a fresh runtime and context per
//! call (how some network servers run codecs); idle memory with 20
//! distinct codecs loaded; memory after 100,000 and after 5,000,000
//! decodes (a per-call leak would show).
//!
//! `cargo bench --bench codec` (options: `-- --decodes N`). Exits non-zero
//! under 50,000 decodes/s, under 20× the fresh-runtime way, over 10 MB for
//! the 20 codecs, or over 1 MB of growth between 100,000 and N decodes.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Instant;

use device_lorawan::codec::js::{JsCodec, DEFAULT_BUDGET, DEFAULT_MEMORY};

/// A sensor codec of ten fields as vendors write them; `k` makes each of
/// the twenty distinct.
fn codec(k: usize) -> String {
    format!(
        r#"// Environmental sensor #{k}: 14-byte uplink on fPort 1.
function s16(b, i) {{ var v = (b[i] << 8) | b[i + 1]; return v & 0x8000 ? v - 0x10000 : v; }}
function u16(b, i) {{ return (b[i] << 8) | b[i + 1]; }}
function decodeUplink(input) {{
  var b = input.bytes;
  if (input.fPort !== 1) return {{ errors: ["unknown fPort " + input.fPort] }};
  if (b.length < 14) return {{ errors: ["too short"] }};
  return {{
    data: {{
      temperature: s16(b, 0) / 100 + {k} * 0,
      humidity: b[2] / 2,
      pressure: u16(b, 3) / 10 + 500,
      co2: u16(b, 5),
      voc: u16(b, 7),
      light: b[9] * 4,
      battery: {{ voltage: u16(b, 10) / 1000, low: (b[12] & 0x80) !== 0 }},
      motion: (b[12] & 0x01) === 1,
      door: (b[12] & 0x02) === 2,
      counter: b[13],
    }},
  }};
}}
"#
    )
}

const PAYLOAD: [u8; 14] = [
    0x08, 0x34, 90, 0x13, 0x88, 0x01, 0xf4, 0x00, 0x40, 120, 0x0c, 0xe4, 0x03, 7,
];

fn rss_kb() -> u64 {
    support::proc_kb(std::process::id(), "VmRSS:")
}

fn main() {
    let decodes = support::arg("--decodes", 5_000_000);
    let path = Path::new("bench-codec.js");
    let base = rss_kb();
    let codecs: Vec<JsCodec> = (0..20)
        .map(|k| JsCodec::load(path, &codec(k), DEFAULT_BUDGET, DEFAULT_MEMORY).unwrap())
        .collect();
    let loaded = rss_kb();
    let c = &codecs[0];
    // Warm up, then ours: one runtime, reused.
    for _ in 0..1000 {
        c.decode(&PAYLOAD, 1, 0.0, "{}").unwrap();
    }
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let d = c.decode(&PAYLOAD, 1, 0.0, "{}").unwrap();
        assert!(d.errors.is_empty());
    }
    let ours = n as f64 / t.elapsed().as_secs_f64();
    // Fresh runtime and context per call.
    let m = 500;
    let source = codec(0);
    let t = Instant::now();
    for _ in 0..m {
        let fresh = JsCodec::load(path, &source, DEFAULT_BUDGET, DEFAULT_MEMORY).unwrap();
        fresh.decode(&PAYLOAD, 1, 0.0, "{}").unwrap();
    }
    let fresh = m as f64 / t.elapsed().as_secs_f64();
    // Memory over many calls.
    let mut done = 1000 + n;
    while done < 100_000 {
        c.decode(&PAYLOAD, 1, 0.0, "{}").unwrap();
        done += 1;
    }
    let at_100k = rss_kb();
    while done < decodes {
        c.decode(&PAYLOAD, 1, 0.0, "{}").unwrap();
        done += 1;
    }
    let at_end = rss_kb();
    println!("codec: 10-field codec, one core: {ours:.0} decodes/s reused, {fresh:.0}/s with a fresh runtime per call ({:.1}×)", ours / fresh);
    println!(
        "codec: 20 codecs loaded: RSS {:.1} → {:.1} MB (+{:.1} MB, {:.0} kB each)",
        base as f64 / 1024.0,
        loaded as f64 / 1024.0,
        (loaded - base) as f64 / 1024.0,
        (loaded - base) as f64 / 20.0
    );
    println!(
        "codec: RSS after 100,000 decodes {:.1} MB, after {decodes} {:.1} MB ({:+} kB)",
        at_100k as f64 / 1024.0,
        at_end as f64 / 1024.0,
        at_end as i64 - at_100k as i64
    );
    let mut failed = false;
    if ours < 50_000.0 {
        eprintln!("FAIL: {ours:.0} decodes/s is under 50,000");
        failed = true;
    }
    if ours < 20.0 * fresh {
        eprintln!(
            "FAIL: only {:.1}× the fresh-runtime way (floor 20×)",
            ours / fresh
        );
        failed = true;
    }
    if loaded - base > 10 * 1024 {
        eprintln!("FAIL: 20 codecs cost more than 10 MB");
        failed = true;
    }
    if at_end > at_100k + 1024 {
        eprintln!("FAIL: RSS grew more than 1 MB between 100,000 and {decodes} decodes");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}
