//! `device-lorawan demo`: the service on embedded defaults (Semtech UDP on
//! loopback, the bundled mote profile, a temporary data directory) and
//! simulated motes and gateways feeding it, with a few faults injected.
//! Prints each decoded uplink as it arrives and a summary at the end.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::profile::DeviceProfile;
use crate::config::Config;
use crate::devices::Registry;
use crate::metrics::{Metrics, Reason};
use crate::pipeline::sink::Sink;
use crate::pipeline::uplink::Uplink;
use crate::service::{self, Parts};
use crate::sim::{self, Faults, SimOptions, Target};

/// The mote profile, built in so the demo runs from anywhere.
pub const MOTE_PROFILE: &str = include_str!("../../profiles/Dragino-LPP-Mote.yaml");

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub devices: usize,
    pub gateways: usize,
    pub rate: f64,
    /// Basics Station gateways instead of Semtech UDP ones.
    pub station: bool,
}

/// Prints one line per uplink.
struct Printer;

impl Sink for Printer {
    fn publish(&mut self, up: &Uplink) -> std::io::Result<()> {
        use std::io::Write;
        let res = &up.profile.device_resources;
        let values: Vec<String> = up
            .readings
            .iter()
            .map(|r| {
                let d = &res[usize::from(r.resource)];
                let v = r.value.as_f64().map_or_else(
                    || format!("{:?}", r.value),
                    |f| {
                        format!("{f:.4}")
                            .trim_end_matches('0')
                            .trim_end_matches('.')
                            .to_string()
                    },
                );
                format!("{}={}{}", d.name, v, d.properties.units)
            })
            .collect();
        let reset = if up.counter_reset {
            "  (counter reset: mote rebooted)"
        } else {
            ""
        };
        writeln!(
            std::io::stdout().lock(),
            "{:<11} fcnt {:>3} epoch {}  {}  | rssi {} dBm snr {:.1} dB via {} gateway(s), best {}{}",
            up.device,
            up.fcnt,
            up.epoch,
            values.join(" "),
            up.rx.rssi,
            up.rx.snr,
            up.gateways,
            up.rx.gateway,
            reset
        )
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut config = Config::default();
    config.service.data_dir = data.path().to_owned();
    config.ingest.udp.bind = "127.0.0.1:0".parse()?;
    config.ingest.basic_station.enabled = opts.station;
    config.ingest.basic_station.bind = "127.0.0.1:0".parse()?;
    config.service.api_bind = "127.0.0.1:0".parse()?;
    let profile = DeviceProfile::from_yaml(
        std::path::Path::new("profiles/Dragino-LPP-Mote.yaml"),
        MOTE_PROFILE,
    )?;
    let profiles = [(profile.name.clone(), profile)].into_iter().collect();
    let seed = 2026;
    // The ABP motes, and one OTAA mote that joins first (and after each reboot).
    let mut entries = sim::mote::entries(opts.devices, seed);
    entries.extend(sim::mote::otaa_entries(1, seed, Default::default()));
    let registry = Registry::build(entries, &profiles)?;
    let metrics = Arc::new(Metrics::default());
    let parts = Parts {
        registry,
        sink: Box::new(Printer),
        metrics: metrics.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound, service) = service::start(Arc::new(config), parts, async move {
        let _ = stop_rx.await;
    })
    .await?;
    let (target, via) = match bound.station {
        Some(addr) => (
            Target::Station(format!("ws://{addr}")),
            format!("LoRa Basics Station ws://{addr}"),
        ),
        None => {
            let udp = bound.udp.expect("demo enables UDP");
            (Target::Udp(udp), format!("Semtech UDP {udp}"))
        }
    };
    println!(
        "device-lorawan demo: {} simulated LMIC ABP motes and 1 OTAA mote, {} gateways -> {via}; {:?}, Ctrl-C to stop early",
        opts.devices, opts.gateways, opts.duration
    );
    let sim_opts = SimOptions {
        devices: opts.devices,
        gateways: opts.gateways,
        rate: opts.rate,
        frames: None,
        duration: Some(opts.duration),
        seed,
        faults: Faults {
            bad_mic: 0.03,
            replay: 0.03,
            garbage: 0.03,
            duplicate: 0.05,
        },
        reboot_every: Some(8),
        start_fcnt: 0,
        otaa_devices: 1,
        otaa_rejoin_every: Some(8),
        ..Default::default()
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = sim::run(target, sim_opts, ctrl_c).await?;
    // Let the last de-duplication window close, then stop the service.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = stop_tx.send(());
    service.await??;
    let rejected: Vec<String> = Reason::ALL
        .iter()
        .filter(|r| metrics.rejected_count(**r) > 0)
        .map(|r| format!("{} {}", r.as_str(), metrics.rejected_count(*r)))
        .collect();
    println!(
        "\nsent {} frames ({} datagrams; injected {} bad MIC, {} replays, {} garbage, {} duplicates), {} JoinRequests\n\
         answered {} joins ({} sessions in use); published {} uplinks, {} counter resets, {} copies merged across gateways; rejected: {}",
        report.expected.len() + report.bad_mic as usize,
        report.copies,
        report.bad_mic,
        report.replays,
        report.garbage,
        report.duplicates,
        report.join_requests,
        metrics.joins_accepted.load(Relaxed),
        metrics.sessions_activated.load(Relaxed),
        metrics.published.load(Relaxed),
        metrics.counter_resets.load(Relaxed),
        metrics.duplicates.load(Relaxed),
        if rejected.is_empty() { "none".to_string() } else { rejected.join(", ") }
    );
    Ok(())
}
