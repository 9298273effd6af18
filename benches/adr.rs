//! What ADR saves: a 200-mote site over 30 minutes of simulated time (each
//! mote sends once a minute; the simulator's clock runs fast), once with the
//! motes' ADR off and once on, against the real `device-lorawan` binary
//! (release) over Semtech UDP with 2 gateways.
//!
//! `cargo bench --bench adr` (options: `-- --motes N --minutes M`).
//! The motes start at DR0 (SF12) and sit between -14 and +10 dB of SNR
//! from the nearest gateway (the second hears them 4 dB lower). Prints the
//! time on air of every uplink (RP002/AN1200.13 formula, NbTrans included)
//! with ADR off and on, their ratio, and the downlinks ADR cost. Exits
//! non-zero if ADR moved a mote where no gateway hears it (a frame lost on
//! air), or saved nothing.

use std::time::Duration;

#[path = "support/mod.rs"]
mod support;

use device_lorawan::sim::{self, mote, SimOptions, SimReport, Target};

fn run(motes: usize, minutes: u64, adr: bool) -> SimReport {
    let dir = tempfile::tempdir().unwrap();
    let devices = mote::devices_yaml(&mote::entries(motes, 9));
    let (_svc, udp, _) = support::service(dir.path(), &devices, "DedupWindow: 50ms");
    let frames = motes as u64 * minutes;
    let opts = SimOptions {
        devices: motes,
        gateways: 2,
        // One uplink a minute per mote, `motes` minutes-worth per second of
        // our clock: each mote sends every second, well after its windows.
        rate: motes as f64,
        frames: Some(frames),
        duration: None,
        seed: 9,
        adr,
        start_dr: Some(0),
        link_snr: (0..motes).map(|i| -14.0 + (i % 25) as f32).collect(),
        linger: Duration::from_secs(2),
        ..Default::default()
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sim::run(Target::Udp(udp), opts, std::future::pending()))
        .unwrap()
}

fn main() {
    let motes = support::arg("--motes", 200) as usize;
    let minutes = support::arg("--minutes", 30);
    let off = run(motes, minutes, false);
    let on = run(motes, minutes, true);
    let (a_off, a_on) = (off.airtime.as_secs_f64(), on.airtime.as_secs_f64());
    let mut drs = [0usize; 16];
    for m in &on.motes {
        drs[usize::from(m.dr)] += 1;
    }
    println!(
        "adr: {motes} motes, {minutes} simulated minutes, one uplink a minute each, 2 gateways"
    );
    println!(
        "  time on air, ADR off: {a_off:.1} s ({} uplinks)",
        off.expected.len()
    );
    println!(
        "  time on air, ADR on:  {a_on:.1} s ({} uplinks)",
        on.expected.len()
    );
    println!(
        "  ADR on / off: {:.3} (saved {:.1} %)",
        a_on / a_off,
        100.0 * (1.0 - a_on / a_off)
    );
    println!(
        "  downlinks ADR cost: {} ({:.2} per mote); LinkADRReq taken {}, refused {}",
        on.downlinks.len(),
        on.downlinks.len() as f64 / motes as f64,
        on.motes.iter().map(|m| m.adr_taken).sum::<u32>(),
        on.motes.iter().map(|m| m.adr_refused).sum::<u32>()
    );
    println!("  motes by final data rate: {:?}", &drs[..6]);
    let mut failed = false;
    if on.lost_on_air + off.lost_on_air > 0 {
        eprintln!(
            "FAIL: {} frames heard by no gateway",
            on.lost_on_air + off.lost_on_air
        );
        failed = true;
    }
    if a_on >= a_off {
        eprintln!("FAIL: ADR saved no airtime");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}
