//! The Arduino mote sketch's `settings.h`, written from a devices-file entry
//! and the service's `Downlink` defaults: the ABP session and the receive
//! windows the firmware must listen in. One source for both sides, so the
//! mote never listens where the service does not send (issue 11: the sketch
//! had RX2 at SF9 while the service sent at the EU868 default, SF12).

use crate::devices::DeviceEntry;
use crate::lorawan::radio::RxSettings;
use crate::lorawan::region::{Region, RegionName, RegionSettings};

/// LMIC's names of the EU868 data rates, by index (`lmic/lorabase_eu868.h`).
const LMIC_EU868_DR: [&str; 7] = [
    "DR_SF12", "DR_SF11", "DR_SF10", "DR_SF9", "DR_SF8", "DR_SF7", "DR_SF7B",
];

#[derive(Debug, thiserror::Error)]
pub enum SketchError {
    #[error("device {0} has no ABP session (devAddr, nwkSKey, appSKey) in the devices file")]
    NoSession(String),
    #[error("device {device}: RX2 data rate {datr} is not an EU868 LoRa data rate")]
    DataRate { device: String, datr: String },
}

fn c_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(|x| format!("0x{x:02x}")).collect();
    format!("{{ {} }}", items.join(", "))
}

/// The header text for `e`, its windows over `defaults`.
pub fn settings_h(e: &DeviceEntry, defaults: RxSettings) -> Result<String, SketchError> {
    if let (Some(join_eui), Some(app_key)) = (e.join_eui, &e.app_key) {
        return Ok(otaa_settings_h(e, join_eui, app_key));
    }
    let (Some(addr), Some(nwk), Some(app)) = (e.dev_addr, &e.nwk_s_key, &e.app_s_key) else {
        return Err(SketchError::NoSession(e.name.clone()));
    };
    let rx = e.rx_windows.over(defaults);
    // The sketch is EU868's (it refuses other regions): LMIC's names for
    // EU868's data-rate indices.
    let eu868 = Region::new(RegionSettings::new(RegionName::EU868));
    let dr = eu868
        .dr_index(rx.rx2_datr, false)
        .filter(|i| usize::from(*i) < LMIC_EU868_DR.len())
        .map(|i| LMIC_EU868_DR[usize::from(i)])
        .ok_or_else(|| SketchError::DataRate {
            device: e.name.clone(),
            datr: rx.rx2_datr.to_string(),
        })?;
    Ok(format!(
        "// Settings of the device-lorawan mote `{name}`, written by\n\
         //   device-lorawan sketch-settings --device {name}\n\
         // from the devices file and the service's Downlink defaults, so the mote\n\
         // listens exactly where the service sends. It holds the session keys: for a\n\
         // real mote, keep it out of version control.\n\
         #ifndef LORAWAN_MOTE_SETTINGS_H\n\
         #define LORAWAN_MOTE_SETTINGS_H\n\
         \n\
         #define MOTE_NAME \"{name}\"\n\
         // ABP session, MSB first as printed in the devices file.\n\
         #define MOTE_DEVADDR 0x{addr}UL\n\
         #define MOTE_NWKSKEY {nwk}\n\
         #define MOTE_APPSKEY {app}\n\
         \n\
         // Receive windows (LMIC rxDelay, rx1DrOffset, dn2Freq, dn2Dr).\n\
         #define MOTE_RX1_DELAY_S {delay}\n\
         #define MOTE_RX1_DR_OFFSET {offset}\n\
         #define MOTE_RX2_FREQUENCY_HZ {freq}UL\n\
         #define MOTE_RX2_DR {dr}  // {datr}\n\
         \n\
         #endif\n",
        name = e.name,
        addr = addr,
        nwk = c_bytes(nwk.expose()),
        app = c_bytes(app.expose()),
        delay = rx.rx1_delay.as_secs(),
        offset = rx.rx1_dr_offset,
        freq = rx.rx2_frequency,
        datr = rx.rx2_datr,
    ))
}

/// An OTAA mote's settings (the sketch built with `MOTE_OTAA`): its EUIs as
/// LMIC wants them (least significant byte first) and its AppKey (most
/// significant first). The receive windows come from the JoinAccept.
fn otaa_settings_h(
    e: &DeviceEntry,
    join_eui: crate::lorawan::Eui64,
    app_key: &crate::lorawan::AesKey,
) -> String {
    let lsb_first = |eui: crate::lorawan::Eui64| {
        let mut b = eui.0;
        b.reverse();
        c_bytes(&b)
    };
    format!(
        "// Settings of the device-lorawan OTAA mote `{name}`, written by\n\
         //   device-lorawan sketch-settings --device {name}\n\
         // from the devices file. It holds the AppKey: for a real mote, keep it\n\
         // out of version control.\n\
         #ifndef LORAWAN_MOTE_SETTINGS_H\n\
         #define LORAWAN_MOTE_SETTINGS_H\n\
         \n\
         #define MOTE_NAME \"{name}\"\n\
         #define MOTE_OTAA 1\n\
         // JoinEUI (AppEUI) and DevEUI least significant byte first, as LMIC reads them.\n\
         #define MOTE_JOINEUI {join}\n\
         #define MOTE_DEVEUI {dev}\n\
         // AppKey, most significant byte first as printed in the devices file.\n\
         #define MOTE_APPKEY {key}\n\
         \n\
         #endif\n",
        name = e.name,
        join = lsb_first(join_eui),
        dev = lsb_first(e.dev_eui),
        key = c_bytes(app_key.expose()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_session_are_the_devices() {
        let mut e = crate::sim::mote::entries(1, 7).remove(0);
        e.rx_windows.rx2_data_rate = crate::lorawan::DataRate::parse("SF9BW125");
        e.rx_windows.rx1_delay = Some(2);
        let h = settings_h(&e, RxSettings::EU868).unwrap();
        assert!(h.contains("#define MOTE_RX2_DR DR_SF9  // SF9BW125"), "{h}");
        assert!(h.contains("#define MOTE_RX1_DELAY_S 2\n"), "{h}");
        assert!(
            h.contains("#define MOTE_RX2_FREQUENCY_HZ 869525000UL"),
            "{h}"
        );
        assert!(h.contains(&format!("#define MOTE_DEVADDR 0x{}UL", e.dev_addr.unwrap())));
        let k = e.nwk_s_key.unwrap();
        assert!(h.contains(&format!("0x{:02x}, 0x{:02x}", k.expose()[0], k.expose()[1])));
        e.rx_windows.rx2_data_rate = crate::lorawan::DataRate::parse("SF7BW500");
        assert!(matches!(
            settings_h(&e, RxSettings::EU868),
            Err(SketchError::DataRate { .. })
        ));
        e.nwk_s_key = None;
        assert!(matches!(
            settings_h(&e, RxSettings::EU868),
            Err(SketchError::NoSession(_))
        ));
    }

    #[test]
    fn otaa_motes_get_their_euis_lsb_first() {
        let e = crate::sim::mote::otaa_entries(1, 7, Default::default()).remove(0);
        let h = settings_h(&e, RxSettings::EU868).unwrap();
        assert!(h.contains("#define MOTE_OTAA 1"), "{h}");
        // 70b3d57ed0010001 → 01 00 01 d0 7e d5 b3 70
        assert!(
            h.contains("#define MOTE_DEVEUI { 0x01, 0x00, 0x01, 0xd0, 0x7e, 0xd5, 0xb3, 0x70 }"),
            "{h}"
        );
        let k = e.app_key.unwrap();
        assert!(
            h.contains(&format!("#define MOTE_APPKEY {{ 0x{:02x}, ", k.expose()[0])),
            "{h}"
        );
        assert!(!h.contains("MOTE_DEVADDR"));
    }
}
