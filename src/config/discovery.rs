//! `Devices.Discovery` and `Devices.ProvisionWatchersDir`: devices found by
//! their JoinRequests, added the device-sdk way (see `src/discovery`); and
//! `Devices.OperatingState`: when a silent device goes DOWN.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// `POST /api/v3/discovery` runs a discovery; off, it answers 503 (as
    /// device-sdk-go does).
    pub enabled: bool,
    /// Also run one this often (0: only on request).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Unknown devices remembered between discoveries (the oldest go).
    pub max_found: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::ZERO,
            max_found: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct OperatingStateConfig {
    /// Expected uplinks missed before a device is set DOWN.
    pub missed_uplinks: u32,
    /// The interval devices without an `UplinkInterval` property are
    /// expected at (none: only those with one are watched).
    #[serde(with = "humantime_serde")]
    pub uplink_interval: Option<Duration>,
}

impl Default for OperatingStateConfig {
    fn default() -> Self {
        Self {
            missed_uplinks: 3,
            uplink_interval: None,
        }
    }
}
