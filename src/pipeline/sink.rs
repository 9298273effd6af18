//! Where decoded uplinks go. Until the EdgeX publisher exists, a
//! [`JsonLines`] sink writes one JSON object per uplink; the demo prints a
//! human line; tests collect uplinks through a channel.

use std::io::Write;

use serde::Serialize;

use crate::pipeline::uplink::Uplink;

pub trait Sink: Send {
    fn publish(&mut self, uplink: &Uplink) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadingLine<'a> {
    resource: &'a str,
    value_type: &'static str,
    value: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    units: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UplinkLine<'a> {
    device: &'a str,
    dev_eui: String,
    profile: &'a str,
    fcnt: u32,
    epoch: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    counter_reset: bool,
    fport: Option<u8>,
    confirmed: bool,
    readings: Vec<ReadingLine<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mac_commands: &'a [crate::lorawan::uplink::MacCommand],
    gateway: String,
    rssi: i32,
    snr: f32,
    gateways: u32,
    source: crate::metrics::Source,
    origin: i64,
}

fn line(up: &Uplink) -> UplinkLine<'_> {
    let res = &up.profile.device_resources;
    UplinkLine {
        device: &up.device,
        dev_eui: up.dev_eui.to_string(),
        profile: &up.profile.name,
        fcnt: up.fcnt,
        epoch: up.epoch,
        counter_reset: up.counter_reset,
        fport: up.fport,
        confirmed: up.confirmed,
        readings: up
            .readings
            .iter()
            .map(|r| {
                let d = &res[usize::from(r.resource)];
                ReadingLine {
                    resource: &d.name,
                    value_type: d.properties.value_type.as_str(),
                    value: r.value.to_edgex_string(d.properties.value_type),
                    units: &d.properties.units,
                }
            })
            .collect(),
        mac_commands: &up.mac_commands,
        gateway: up.rx.gateway.to_string(),
        rssi: up.rx.rssi,
        snr: up.rx.snr,
        gateways: up.gateways,
        source: up.source,
        origin: up.received_ns,
    }
}

/// One JSON object per line.
pub struct JsonLines<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn publish(&mut self, up: &Uplink) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &line(up))?;
        self.out.write_all(b"\n")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// No JSON lines (`Readings.JsonLines: ""`): EdgeX delivery alone.
pub struct Discard;

impl Sink for Discard {
    fn publish(&mut self, _: &Uplink) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands uplinks to a channel (tests, the demo).
pub struct ChannelSink(pub std::sync::mpsc::Sender<Uplink>);

impl Sink for ChannelSink {
    fn publish(&mut self, up: &Uplink) -> std::io::Result<()> {
        self.0
            .send(up.clone())
            .map_err(|_| std::io::Error::other("receiver gone"))
    }
}

/// Every uplink to each of several sinks, in order; the first error is returned
/// after all have been tried.
pub struct Fanout(pub Vec<Box<dyn Sink>>);

impl Sink for Fanout {
    fn publish(&mut self, up: &Uplink) -> std::io::Result<()> {
        let mut first = Ok(());
        for s in &mut self.0 {
            if let Err(e) = s.publish(up) {
                first = first.and(Err(e));
            }
        }
        first
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let mut first = Ok(());
        for s in &mut self.0 {
            if let Err(e) = s.flush() {
                first = first.and(Err(e));
            }
        }
        first
    }
}
