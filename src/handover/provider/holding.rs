//! What a provider keeps per contract across restarts
//! (`contracts/<id>.state.json`): the fencing epoch, who holds the devices,
//! and the last delivered frame of each device by either edge.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::edgex::delivered::later;
use crate::handover::fencing::{Fence, Holder};
use crate::handover::receipt::Detected;
use crate::lorawan::{Eui64, FcntState};

/// A device's counter as stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredCounter {
    pub epoch: u32,
    pub fcnt: Option<u32>,
}

/// A DevEUI as a JSON map key (hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Eui64Hex(pub Eui64);
impl TryFrom<String> for Eui64Hex {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Eui64::from_hex(&s).map(Self).map_err(|e| e.to_string())
    }
}
impl From<Eui64Hex> for String {
    fn from(e: Eui64Hex) -> String {
        e.0.to_string()
    }
}

/// What a provider keeps per contract across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Holding {
    pub epoch: u64,
    pub holder: Holder,
    /// The last delivered frame of each device, by either edge, as known.
    pub delivered: BTreeMap<Eui64Hex, StoredCounter>,
    /// The provider's takeover, while it holds the devices: for the receipt
    /// it gives at hand-back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<Taken>,
    /// The contract ended while the provider held the devices.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
}

/// When and how the provider took the devices over.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taken {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub detected: Detected,
    /// From the customer's last sign of life to publishing.
    pub takeover_ms: u64,
    /// The counters it took over after.
    pub after: BTreeMap<Eui64Hex, StoredCounter>,
}

impl Holding {
    pub fn fence(&self) -> Fence {
        Fence {
            epoch: self.epoch,
            holder: self.holder,
        }
    }

    pub fn set_fence(&mut self, f: Fence) {
        self.epoch = f.epoch;
        self.holder = f.holder;
    }

    /// The counters as stored, for a [`Taken`].
    pub fn counters(&self) -> BTreeMap<Eui64Hex, StoredCounter> {
        self.delivered.clone()
    }

    pub fn delivered(&self) -> HashMap<Eui64, FcntState> {
        self.delivered
            .iter()
            .map(|(eui, c)| {
                let s = FcntState {
                    last: c.fcnt,
                    epoch: c.epoch,
                };
                (eui.0, s)
            })
            .collect()
    }

    pub fn note(&mut self, counters: impl IntoIterator<Item = (Eui64, FcntState)>) {
        for (eui, s) in counters {
            let e = self
                .delivered
                .entry(Eui64Hex(eui))
                .or_insert(StoredCounter {
                    epoch: 0,
                    fcnt: None,
                });
            let known = FcntState {
                last: e.fcnt,
                epoch: e.epoch,
            };
            if later(s, known) {
                *e = StoredCounter {
                    epoch: s.epoch,
                    fcnt: s.last,
                };
            }
        }
    }
}
