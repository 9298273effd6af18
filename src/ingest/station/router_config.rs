//! The `router_config` a station gets in answer to its `version`: the
//! site's region, its data-rate table, the band's frequency range, the
//! uplink channels and an SX1301 concentrator plan for them (two radios,
//! eight multi-SF channels and one wide LoRa channel), built from the
//! region tables (US915/AU915: the configured sub-band; EU-like plans:
//! with `Region.ExtraChannels`).

use serde_json::{json, Value};

use crate::lorawan::region::{Region, RegionName};

/// How far a channel may sit from its radio's centre frequency (Hz).
const MAX_IF: i64 = 400_000;

/// The region name Station knows (`EU868`, `US915`, `AS923-1`, ...).
fn station_region(name: RegionName) -> &'static str {
    match name {
        RegionName::EU868 => "EU868",
        RegionName::US915 => "US915",
        RegionName::AU915 => "AU915",
        RegionName::AS923 => "AS923-1",
        RegionName::AS923_2 => "AS923-2",
        RegionName::AS923_3 => "AS923-3",
        RegionName::AS923_4 => "AS923-4",
        RegionName::IN865 => "IN865",
        RegionName::KR920 => "KR920",
        RegionName::EU433 => "EU433",
        RegionName::CN470 => "CN470",
        RegionName::RU864 => "RU864",
    }
}

/// The concentrator plan for `channels` (Hz, 125 kHz multi-SF) and an
/// optional wide channel (Hz, bandwidth kHz, SF): radios placed greedily
/// so each channel is within ±400 kHz of its radio.
pub fn sx1301_conf(multi: &[u32], wide: Option<(u32, u32, u8)>) -> Result<Value, String> {
    if multi.len() > 8 {
        return Err(format!(
            "{} 125 kHz channels: one SX1301 takes 8",
            multi.len()
        ));
    }
    let mut sorted = multi.to_vec();
    sorted.sort_unstable();
    // Groups of channels spanning at most 800 kHz, each on one radio.
    let mut radios: Vec<(u32, u32)> = Vec::new(); // (lowest, highest)
    for f in sorted.iter().copied().chain(wide.map(|w| w.0)) {
        match radios
            .iter_mut()
            .find(|(lo, hi)| i64::from(f.max(*hi)) - i64::from(f.min(*lo)) <= 2 * MAX_IF)
        {
            Some(r) => *r = (r.0.min(f), r.1.max(f)),
            None => radios.push((f, f)),
        }
    }
    if radios.len() > 2 {
        return Err("the channels span more than two radios of one SX1301".into());
    }
    let centre = |r: &(u32, u32)| (r.0 + r.1) / 2;
    let place = |f: u32| {
        radios
            .iter()
            .enumerate()
            .find(|(_, r)| (i64::from(f) - i64::from(centre(r))).abs() <= MAX_IF)
            .map(|(i, r)| (i, i64::from(f) - i64::from(centre(r))))
            .expect("every channel was grouped")
    };
    let mut conf = serde_json::Map::new();
    conf.insert("chan_FSK".into(), json!({"enable": false}));
    conf.insert(
        "chan_Lora_std".into(),
        match wide {
            Some((f, bw, sf)) => {
                let (radio, ifreq) = place(f);
                json!({"enable": true, "radio": radio, "if": ifreq, "bandwidth": bw * 1000, "spread_factor": sf})
            }
            None => json!({"enable": false}),
        },
    );
    for i in 0..8 {
        let c = match multi.get(i) {
            Some(&f) => {
                let (radio, ifreq) = place(f);
                json!({"enable": true, "radio": radio, "if": ifreq})
            }
            None => json!({"enable": false}),
        };
        conf.insert(format!("chan_multiSF_{i}"), c);
    }
    for i in 0..2 {
        let r = match radios.get(i) {
            Some(r) => json!({"enable": true, "freq": centre(r)}),
            None => json!({"enable": false, "freq": 0}),
        };
        conf.insert(format!("radio_{i}"), r);
    }
    Ok(Value::Object(conf))
}

/// The `router_config` for `region`.
pub fn router_config(region: &Region) -> Result<Value, String> {
    let channels = region.uplink_channels();
    let mut multi = Vec::new();
    let mut wide = None;
    for &(f, min, _) in &channels {
        match region.data_rate(min) {
            Some(d) if d.bw_khz == 125 => multi.push(f),
            Some(d) if wide.is_none() => wide = Some((f, u32::from(d.bw_khz), d.sf)),
            _ => {}
        }
    }
    let drs: Vec<[i64; 3]> = region
        .station_dr_table()
        .iter()
        .map(|&(sf, bw, dn)| [i64::from(sf), i64::from(bw), i64::from(dn)])
        .collect();
    let (lo, hi) = region.frequency_range();
    Ok(json!({
        "msgtype": "router_config",
        "NetID": null,
        "JoinEui": null,
        "region": station_region(region.name()),
        "hwspec": "sx1301/1",
        "freq_range": [lo, hi],
        "DRs": drs,
        "upchannels": channels.iter().map(|&(f, min, max)| json!([f, min, max])).collect::<Vec<_>>(),
        "sx1301_conf": [sx1301_conf(&multi, wide)?],
        "nocca": false,
        "nodc": false,
        "nodwell": !region.settings.dwell_time_400ms,
        "MuxTime": super::messages::mux_time(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::region::RegionSettings;

    fn channels_of(conf: &Value) -> Vec<(u32, i64)> {
        let c = &conf["sx1301_conf"][0];
        let radio = |r: &Value| {
            c[format!("radio_{}", r.as_u64().unwrap())]["freq"]
                .as_i64()
                .unwrap()
        };
        (0..8)
            .filter_map(|i| {
                let ch = &c[format!("chan_multiSF_{i}")];
                ch["enable"].as_bool().unwrap().then(|| {
                    let ifreq = ch["if"].as_i64().unwrap();
                    assert!(ifreq.abs() <= MAX_IF);
                    ((radio(&ch["radio"]) + ifreq) as u32, ifreq)
                })
            })
            .collect()
    }

    #[test]
    fn eu868_defaults_and_extra_channels() {
        let conf = router_config(&Region::new(RegionSettings::new(RegionName::EU868))).unwrap();
        assert_eq!(conf["region"], "EU868");
        assert_eq!(conf["freq_range"], json!([863_000_000, 870_000_000]));
        // RP002 EU868: DR0 SF12/125 … DR5 SF7/125, DR6 SF7/250, DR7 FSK.
        assert_eq!(conf["DRs"][0], json!([12, 125, 0]));
        assert_eq!(conf["DRs"][6], json!([7, 250, 0]));
        assert_eq!(conf["DRs"][7], json!([0, 0, 0]));
        assert_eq!(conf["DRs"][8], json!([-1, 0, 0]));
        let got: Vec<u32> = channels_of(&conf).iter().map(|c| c.0).collect();
        assert_eq!(got, [868_100_000, 868_300_000, 868_500_000]);
        assert_eq!(conf["upchannels"][0], json!([868_100_000, 0, 5]));
        assert_eq!(conf["nodwell"], true);

        let mut s = RegionSettings::new(RegionName::EU868);
        for (i, slot) in s.extra_channels.iter_mut().take(5).enumerate() {
            *slot = Some(crate::lorawan::region::ExtraChannel {
                frequency: 867_100_000 + 200_000 * i as u32,
                min_dr: 0,
                max_dr: 5,
            });
        }
        let conf = router_config(&Region::try_new(s).unwrap()).unwrap();
        let mut got: Vec<u32> = channels_of(&conf).iter().map(|c| c.0).collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                867_100_000,
                867_300_000,
                867_500_000,
                867_700_000,
                867_900_000,
                868_100_000,
                868_300_000,
                868_500_000
            ]
        );
    }

    #[test]
    fn us915_sub_band_two() {
        let conf = router_config(&Region::new(RegionSettings::new(RegionName::US915))).unwrap();
        assert_eq!(conf["region"], "US915");
        // DR4 SF8/500 up; DR8..13 SF12..7/500 downlink only.
        assert_eq!(conf["DRs"][4], json!([8, 500, 0]));
        assert_eq!(conf["DRs"][8], json!([12, 500, 1]));
        assert_eq!(conf["DRs"][13], json!([7, 500, 1]));
        let got: Vec<u32> = channels_of(&conf).iter().map(|c| c.0).collect();
        let want: Vec<u32> = (0..8).map(|i| 903_900_000 + 200_000 * i).collect();
        assert_eq!(got, want);
        let c = &conf["sx1301_conf"][0];
        let std = &c["chan_Lora_std"];
        let radio = c[format!("radio_{}", std["radio"].as_u64().unwrap())]["freq"]
            .as_i64()
            .unwrap();
        assert_eq!(radio + std["if"].as_i64().unwrap(), 904_600_000);
        assert_eq!(
            (std["bandwidth"].as_u64(), std["spread_factor"].as_u64()),
            (Some(500_000), Some(8))
        );
    }

    #[test]
    fn plans_that_do_not_fit_are_refused() {
        let nine: Vec<u32> = (0..9).map(|i| 867_000_000 + 200_000 * i).collect();
        assert!(sx1301_conf(&nine, None).is_err());
        assert!(sx1301_conf(&[863_100_000, 865_100_000, 869_100_000], None).is_err());
    }
}
