//! Simulated Basics Station gateways: each does discovery on
//! `/router-info`, connects to the traffic URI it is given, says
//! `version`, waits for its `router_config`, then sends uplinks as
//! `updf`/`jreq` and takes `dnmsg` downlinks (RX1, or RX2 when told to
//! refuse RX1, as a station falls back by itself), answering `dntxed`.

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::downlink::Transmission;
use crate::ingest::station::messages::{eui_text, mux_time};
use crate::lorawan::region::Region;
use crate::lorawan::Eui64;

/// One connected simulated station: where its messages go.
pub type StationLink = mpsc::Sender<String>;

/// Connect gateway `eui` to the service at `base` (`ws://host:port`).
pub async fn connect(
    base: &str,
    eui: Eui64,
    region: Region,
    down: mpsc::Sender<Transmission>,
    refuse_rx1: bool,
) -> anyhow::Result<StationLink> {
    let (mut info, _) = tokio_tungstenite::connect_async(format!("{base}/router-info")).await?;
    info.send(Message::text(
        serde_json::json!({"router": eui_text(eui)}).to_string(),
    ))
    .await?;
    let answer = match info.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<serde_json::Value>(t.as_str())?,
        other => anyhow::bail!("router-info answered {other:?}"),
    };
    let Some(uri) = answer["uri"].as_str() else {
        anyhow::bail!("router-info refused gateway {eui}: {answer}");
    };
    let (ws, _) = tokio_tungstenite::connect_async(uri).await?;
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::text(
        serde_json::json!({"msgtype": "version", "station": "sim", "protocol": 2}).to_string(),
    ))
    .await?;
    match stream.next().await {
        Some(Ok(Message::Text(t))) if t.as_str().contains("router_config") => {}
        other => anyhow::bail!("no router_config: {other:?}"),
    }
    let (tx, mut rx) = mpsc::channel::<String>(256);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(text) => if sink.send(Message::text(text)).await.is_err() { return },
                    None => { let _ = sink.close().await; return }
                },
                m = stream.next() => {
                    let Some(Ok(m)) = m else { return };
                    let Message::Text(t) = m else { continue };
                    let Ok(d) = serde_json::from_str::<serde_json::Value>(t.as_str()) else { continue };
                    if d["msgtype"] != "dnmsg" {
                        continue;
                    }
                    let Some(t) = transmission(&d, &region, refuse_rx1) else { continue };
                    // As station 2.0.6 sends it (tests/peers/recorded/):
                    // both seqno and diid, the window's DR and frequency.
                    let dntxed = serde_json::json!({
                        "msgtype": "dntxed", "seqno": d["diid"], "diid": d["diid"],
                        "DR": region.dr_index(t.datr, false), "Freq": t.frequency, "DevEui": d["DevEui"],
                        "rctx": d["rctx"], "xtime": d["xtime"], "txtime": mux_time(), "gpstime": 0,
                    });
                    if sink.send(Message::text(dntxed.to_string())).await.is_err()
                        || down.send(t).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    Ok(tx)
}

/// What a station puts on air for `dnmsg` `d`: RX1 (`RxDelay` after the
/// uplink's xtime), or RX2 a second later when RX1 is refused or absent.
fn transmission(d: &serde_json::Value, region: &Region, refuse_rx1: bool) -> Option<Transmission> {
    let phy = hex::decode(d["pdu"].as_str()?).ok()?;
    if d["dC"] == 2 {
        // Class C: at once, on RX2 (a station's altTxTime), no xtime.
        return Some(Transmission {
            phy,
            tmst: 0,
            frequency: d["RX2Freq"].as_u64()? as u32,
            datr: region.data_rate(d["RX2DR"].as_u64()? as u8)?,
            immediately: true,
        });
    }
    let base = d["xtime"].as_i64()? as u32;
    let delay = d["RxDelay"].as_u64()? as u32 * 1_000_000;
    let rx1 = d["RX1DR"]
        .as_u64()
        .zip(d["RX1Freq"].as_u64())
        .filter(|_| !refuse_rx1);
    let (dr, freq, at) = match rx1 {
        Some((dr, f)) => (dr, f, base.wrapping_add(delay)),
        None => (
            d["RX2DR"].as_u64()?,
            d["RX2Freq"].as_u64()?,
            base.wrapping_add(delay + 1_000_000),
        ),
    };
    Some(Transmission {
        phy,
        tmst: at,
        frequency: freq as u32,
        datr: region.data_rate(dr as u8)?,
        immediately: false,
    })
}
