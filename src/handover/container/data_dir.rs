//! The container's data directory, written before it starts: its
//! configuration (derived from this edge's), the devices file with the
//! synced sessions, the profiles, the join state of OTAA devices and the
//! frame counters to start from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use super::super::pb::DeviceSession;
use super::super::takeover::{adopted, counter_of};
use crate::config::{Config, HandoverConfig};
use crate::image::package::DATA;
use crate::lorawan::{Eui64, FcntState};

/// The container's configuration: this edge's, with the container's own
/// API port, data paths inside the image, MQTT client ids of its own (a
/// broker drops the older of two clients with one id), no UDP listener and
/// no handover roles. Its ids are this edge's with the contract id
/// appended (`device-lorawan-ingest-<contract>`), so the container, this edge
/// and the customer's own service never share one on a broker.
pub fn container_config(config: &Config, contract: &str, api: SocketAddr) -> Config {
    let mut config = config.clone();
    config.derive_client_ids();
    let config = &config;
    let mut c = config.clone();
    c.service.name = format!("{}-{contract}", config.service.name);
    c.service.api_bind = api;
    c.service.data_dir = DATA.into();
    c.devices.file = format!("{DATA}/devices.yaml").into();
    c.devices.profiles_dir = format!("{DATA}/profiles").into();
    c.readings.json_lines = crate::image::package::readings_in_image(&config.readings.json_lines);
    c.ingest.udp.enabled = false;
    c.ingest.mqtt.client_id = format!("{}-{contract}", config.ingest.mqtt.client_id);
    // A session kept from an earlier takeover of this contract would hand
    // it that takeover's frames first: old counters, taken for a reboot.
    c.ingest.mqtt.clean_session = true;
    c.edgex.message_bus.client_id = format!("{}-{contract}", config.edgex.message_bus.client_id);
    c.handover = HandoverConfig {
        resume_after: format!("{DATA}/{}", crate::handover::resume_file::RESUME),
        ..HandoverConfig::default()
    };
    c
}

/// The devices file for `sessions`, keys included.
fn devices_yaml(sessions: &[DeviceSession]) -> Result<String, String> {
    let entries = sessions
        .iter()
        .map(|s| adopted(s).map(|a| a.entry).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::devices::to_yaml(&entries))
}

/// Fill `dir` for the container: configuration and devices (0600: they hold
/// passwords and keys), profiles, and counters from `delivered` on (the
/// synced reset epoch, the downlink counters).
pub fn write_data_dir(
    dir: &Path,
    config: &Config,
    contract: &str,
    api: SocketAddr,
    sessions: &[DeviceSession],
    delivered: &[(Eui64, FcntState)],
) -> std::io::Result<()> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    std::fs::create_dir_all(dir.join("profiles"))?;
    crate::handover::resume_file::clear(dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let yaml = serde_yaml_ng::to_string(&container_config(config, contract, api))
        .map_err(|e| invalid(e.to_string()))?;
    crate::fsutil::write_atomic(&dir.join("configuration.yaml"), yaml.as_bytes(), 0o600)?;
    crate::fsutil::write_atomic(
        &dir.join("devices.yaml"),
        devices_yaml(sessions).map_err(invalid)?.as_bytes(),
        0o600,
    )?;
    for s in sessions {
        let profile = adopted(s).map_err(|e| invalid(e.to_string()))?.profile;
        // JSON is YAML: the profile as synced.
        let path = dir.join("profiles").join(format!("{}.yaml", profile.name));
        let json = serde_json::to_vec_pretty(&*profile).map_err(|e| invalid(e.to_string()))?;
        crate::fsutil::write_atomic(&path, &json, 0o644)?;
    }
    // OTAA devices' join state: the container restores their sessions from it.
    let mut joins = crate::store::joins::JoinStore::open(dir).map_err(std::io::Error::other)?;
    for s in sessions {
        if let Some(state) = adopted(s).map_err(|e| invalid(e.to_string()))?.join {
            joins
                .record(Eui64::from_u64(s.dev_eui), state)
                .map_err(std::io::Error::other)?;
        }
    }
    joins.sync().map_err(std::io::Error::other)?;
    // Their MAC state: the container answers and asks as the customer did.
    let mut macs = crate::store::state_log::StateLog::<crate::lorawan::mac::MacState>::open(dir)
        .map_err(std::io::Error::other)?;
    for s in sessions {
        if let Some(state) = adopted(s).map_err(|e| invalid(e.to_string()))?.mac {
            macs.record(Eui64::from_u64(s.dev_eui), state)
                .map_err(std::io::Error::other)?;
        }
    }
    macs.sync().map_err(std::io::Error::other)?;
    let mut counters =
        crate::store::counters::CounterStore::open(dir).map_err(std::io::Error::other)?;
    let after: HashMap<Eui64, FcntState> = delivered.iter().copied().collect();
    for s in sessions {
        let (eui, synced) = counter_of(&s.counter.unwrap_or_default());
        let up = after.get(&eui).copied().unwrap_or(synced);
        counters.record(eui, up).map_err(std::io::Error::other)?;
        // The synced FCntDown is the next one to use.
        let next_down = s.counter.map_or(0, |c| c.fcnt_down);
        if next_down > 0 {
            counters
                .record_down(eui, next_down - 1)
                .map_err(std::io::Error::other)?;
        }
    }
    counters.sync().map_err(std::io::Error::other)
}
