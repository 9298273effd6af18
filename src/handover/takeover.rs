//! What a provider does with the devices handed over: arm (decode and hold
//! their uplinks while the customer publishes), activate (publish the held
//! uplinks the customer did not deliver, then live), stand down (hold again,
//! and say what was delivered). [`InProcess`] does it inside this edge's
//! own running pipeline; [`super::container::Container`] runs the
//! customer's own image in a container engine.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use super::contract::SignedContract;
use super::pb::{Counter, DeviceSession};
use crate::codec::{CodecKind, DeviceProfile};
use crate::control::mailbox::{Adopted, Control};
use crate::devices::{AdminState, DeviceEntry};
use crate::edgex::delivered::Delivered;
use crate::lorawan::{AesKey, DevAddr, Eui64, FcntPolicy, FcntState};

/// The container of a contract, for status.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunningContainer {
    pub name: String,
    pub id: String,
    pub image: String,
    /// Its device-service API (and `/metrics`), on this host.
    pub api: SocketAddr,
}

/// One contract's devices, as the customer last synced them.
#[derive(Clone, Copy)]
pub struct Handed<'a> {
    pub contract: &'a SignedContract,
    pub sessions: &'a [DeviceSession],
}

/// Why a takeover step failed. Never a key: a session's fields are named,
/// not quoted.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// A synced session that does not read (its device and what is wrong).
    #[error("device {device}: {what}")]
    Session { device: String, what: String },
    /// A name this edge does not know (a codec, a counter policy, ...).
    #[error("unknown {what} {value:?}")]
    Unknown { what: &'static str, value: String },
    /// This edge's pipeline refused the devices.
    #[error("{0}")]
    Refused(String),
    /// This edge is stopping.
    #[error(transparent)]
    Stopped(#[from] crate::control::mailbox::Stopped),
    /// The container engine (Docker API) failed.
    #[error("container engine: {0}")]
    Engine(String),
    /// A store in the container's data directory did not read.
    #[error("{what}: {error}")]
    Store { what: &'static str, error: String },
}

fn session(s: &DeviceSession, what: impl std::fmt::Display) -> TakeoverError {
    TakeoverError::Session {
        device: s.name.clone(),
        what: what.to_string(),
    }
}

#[tonic::async_trait]
pub trait Takeover: Send + Sync {
    /// Decode these devices, holding their uplinks unpublished. Called at
    /// every session sync.
    async fn arm(&self, handed: Handed<'_>) -> Result<(), TakeoverError>;
    /// Publish the devices: held uplinks after `delivered`, then live.
    async fn activate(
        &self,
        handed: Handed<'_>,
        delivered: &[(Eui64, FcntState)],
    ) -> Result<(), TakeoverError>;
    /// Stop publishing the devices; the last frame of each this edge
    /// delivered (never later than what EdgeX confirmed: the customer
    /// publishes again everything after it).
    async fn stand_down(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, FcntState)>, TakeoverError>;
    /// The join state of the handed-over OTAA devices, as this edge has it
    /// (after standing down: joins it answered go back to the customer).
    /// The container mode keeps its own, and gives none back.
    async fn join_states(
        &self,
        _handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, crate::lorawan::otaa::JoinState)>, TakeoverError> {
        Ok(Vec::new())
    }
    /// The MAC state of the handed-over devices, as this edge has it
    /// (after standing down). The container mode gives none back.
    async fn mac_states(
        &self,
        _handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, crate::lorawan::mac::MacState)>, TakeoverError> {
        Ok(Vec::new())
    }
    /// The frames of each device this edge delivered since it last
    /// activated them, in delivery order (for the receipt; asked after
    /// [`Takeover::stand_down`]). The container mode lists what this edge
    /// published itself, not the container's.
    async fn deliveries(
        &self,
        _handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, Vec<FcntState>)>, TakeoverError> {
        Ok(Vec::new())
    }
    /// Whether [`Takeover::deliveries`] lists every frame delivered while
    /// this edge held the devices.
    fn lists_every_delivery(&self) -> bool {
        true
    }
    /// The container running contract `id`'s devices, if any (for status).
    fn container(&self, _id: &str) -> Option<RunningContainer> {
        None
    }
}

/// The counter a [`Counter`] message carries.
pub fn counter_of(c: &Counter) -> (Eui64, FcntState) {
    (
        Eui64::from_u64(c.dev_eui),
        FcntState {
            last: c.fcnt,
            epoch: c.epoch,
        },
    )
}

pub fn counter_msg(eui: Eui64, s: FcntState, down: u32) -> Counter {
    Counter {
        dev_eui: eui.as_u64(),
        epoch: s.epoch,
        fcnt: s.last,
        fcnt_down: down,
    }
}

fn enum_from_str<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &'static str,
) -> Result<T, TakeoverError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        TakeoverError::Unknown {
            what,
            value: text.to_owned(),
        }
    })
}

pub fn enum_to_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A synced session as the pipeline takes it. Errors never quote keys.
pub fn adopted(s: &DeviceSession) -> Result<Adopted, TakeoverError> {
    let key = |b: &[u8], what: &str| -> Result<AesKey, TakeoverError> {
        let bytes: [u8; 16] = b
            .try_into()
            .map_err(|_| session(s, format_args!("{what} is not 16 bytes")))?;
        Ok(AesKey::new(bytes))
    };
    let profile: DeviceProfile = serde_json::from_str(&s.profile_json)
        .map_err(|e| session(s, format_args!("profile: {e}")))?;
    let codec: CodecKind = enum_from_str(&s.codec, "codec")?;
    let fcnt_policy: FcntPolicy = enum_from_str(&s.fcnt_policy, "counter policy")?;
    let counter = s.counter.unwrap_or_default();
    let rx = s.rx_windows.clone().unwrap_or_default();
    let small = |v: Option<u32>, max: u32, what: &str| {
        v.map(|v| {
            u8::try_from(v)
                .ok()
                .filter(|v| u32::from(*v) <= max)
                .ok_or_else(|| session(s, format_args!("{what} {v} is out of range")))
        })
        .transpose()
    };
    let rx_windows = crate::devices::RxWindows {
        rx1_delay: small(rx.rx1_delay_s, 15, "rx1Delay")?,
        rx1_dr_offset: small(rx.rx1_dr_offset, 5, "rx1DrOffset")?,
        rx2_frequency: rx.rx2_frequency,
        rx2_data_rate: rx
            .rx2_data_rate
            .as_deref()
            .map(|d| {
                crate::lorawan::DataRate::parse(d).ok_or_else(|| {
                    session(s, format_args!("rx2DataRate {d:?} is not a LoRa data rate"))
                })
            })
            .transpose()?,
    };
    // An OTAA device comes with its root key and join state; its session
    // is restored from that state, not written in the entry.
    let otaa = match &s.otaa {
        Some(o) => Some((
            Eui64::from_u64(o.join_eui),
            key(&o.app_key, "AppKey")?,
            enum_from_str::<crate::lorawan::region::MacVersionName>(&o.mac_version, "MAC version")?,
            serde_json::from_str::<crate::lorawan::otaa::JoinState>(&o.join_state)
                .map_err(|e| session(s, format_args!("join state: {e}")))?,
        )),
        None => None,
    };
    let (dev_addr, nwk_s_key, app_s_key) = match otaa {
        Some(_) => (None, None, None),
        None => (
            Some(DevAddr(s.dev_addr)),
            Some(key(&s.nwk_s_key, "NwkSKey")?),
            Some(key(&s.app_s_key, "AppSKey")?),
        ),
    };
    // No MAC state yet is none; a state that does not read is refused
    // like any other field (the device would otherwise start afresh unseen).
    let mac = match s.mac_state.as_str() {
        "" => None,
        json => Some(
            serde_json::from_str::<crate::lorawan::mac::MacState>(json)
                .map_err(|e| session(s, format_args!("MAC state: {e}")))?,
        ),
    };
    Ok(Adopted {
        mac,
        join: otaa.as_ref().map(|o| o.3.clone()),
        entry: DeviceEntry {
            name: s.name.clone(),
            dev_eui: Eui64::from_u64(s.dev_eui),
            dev_addr,
            nwk_s_key,
            app_s_key,
            profile: profile.name.clone(),
            codec,
            fcnt_policy,
            admin_state: AdminState::Unlocked,
            rx_windows,
            region: match s.region.as_str() {
                "" => None,
                r => Some(
                    serde_yaml_ng::from_str(r)
                        .map_err(|_| session(s, format_args!("unknown region {r:?}")))?,
                ),
            },
            activation: if otaa.is_some() {
                crate::devices::Activation::Otaa
            } else {
                crate::devices::Activation::Abp
            },
            join_eui: otaa.as_ref().map(|o| o.0),
            app_key: otaa.as_ref().map(|o| o.1),
            mac_version: otaa.as_ref().map_or(Default::default(), |o| o.2),
            adr: true,
            variables: Default::default(),
            class: Default::default(),
        },
        profile: Arc::new(profile),
        up: counter_of(&counter).1,
        down: counter.fcnt_down,
    })
}

/// How long standing down waits for this edge's journal to reach EdgeX.
const STAND_DOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// The provider's own running service takes the devices over.
pub struct InProcess {
    pub control: mpsc::UnboundedSender<Control>,
    pub delivered: Arc<Delivered>,
    /// This edge's core-metadata, told which devices it holds.
    pub edgex: Option<Arc<crate::edgex::held::HeldInEdgex>>,
    /// The held devices' events on the message bus (when events go there).
    pub bus: Option<Arc<super::bus_watch::BusWatch>>,
}

/// The devices of `handed` as this edge's core-metadata should list them.
fn held(handed: Handed<'_>) -> Vec<crate::edgex::held::Held> {
    handed
        .sessions
        .iter()
        .filter_map(|s| {
            Some(crate::edgex::held::Held {
                name: s.name.clone(),
                profile: serde_json::from_str(&s.profile_json).ok()?,
                dev_eui: Eui64::from_u64(s.dev_eui).to_string(),
                dev_addr: (s.dev_addr != 0).then(|| DevAddr(s.dev_addr).to_string()),
                otaa: s.otaa.is_some(),
            })
        })
        .collect()
}

impl InProcess {
    /// Whether this edge's pipeline answers the devices' JoinRequests.
    /// Take `joins` as the devices' truth (a container answered them while
    /// this edge only shadowed them): a Resume of no device, with joins.
    pub async fn learn_joins(
        &self,
        joins: Vec<(Eui64, crate::lorawan::otaa::JoinState)>,
    ) -> Result<(), TakeoverError> {
        Control::ask(&self.control, |done| Control::Resume {
            after: Vec::new(),
            joins,
            macs: Vec::new(),
            done,
        })
        .await
        .map(drop)
        .map_err(TakeoverError::from)
    }

    pub async fn answer_joins(
        &self,
        handed: Handed<'_>,
        answer: bool,
    ) -> Result<(), TakeoverError> {
        let devices = handed.contract.dev_euis();
        Control::ask(&self.control, |done| Control::AnswerJoins {
            devices,
            answer,
            done,
        })
        .await
        .map_err(TakeoverError::from)
    }
}

#[tonic::async_trait]
impl Takeover for InProcess {
    async fn arm(&self, handed: Handed<'_>) -> Result<(), TakeoverError> {
        let devices = handed
            .sessions
            .iter()
            .map(adopted)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(bus) = &self.bus {
            bus.watch(handed.sessions.iter().map(|s| s.name.clone()));
        }
        Control::ask(&self.control, |done| Control::Adopt { devices, done })
            .await?
            .map_err(TakeoverError::Refused)
    }

    async fn activate(
        &self,
        handed: Handed<'_>,
        delivered: &[(Eui64, FcntState)],
    ) -> Result<(), TakeoverError> {
        self.delivered.list(&handed.contract.dev_euis());
        // Past what the customer put on the bus without having said so yet.
        let after = match &self.bus {
            Some(bus) => {
                if !bus.settle().await {
                    tracing::warn!("the message bus did not pass a marker back in time: publishing from the customer's counters");
                }
                bus.advance(delivered)
            }
            None => delivered.to_vec(),
        };
        Control::ask(&self.control, |done| Control::Resume {
            after,
            joins: Vec::new(),
            macs: Vec::new(),
            done,
        })
        .await
        .map_err(TakeoverError::from)?;
        // In the background: publishing never waits for core-metadata.
        if let Some(edgex) = self.edgex.clone() {
            let id = handed.contract.contract.id.clone();
            let devices = held(handed);
            tokio::spawn(async move { edgex.up(&id, &devices).await });
        }
        Ok(())
    }

    async fn mac_states(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, crate::lorawan::mac::MacState)>, TakeoverError> {
        let devices = handed.contract.dev_euis();
        Control::ask(&self.control, |reply| Control::MacStates { devices, reply })
            .await
            .map_err(TakeoverError::from)
    }

    async fn join_states(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, crate::lorawan::otaa::JoinState)>, TakeoverError> {
        let devices = handed.contract.dev_euis();
        Control::ask(&self.control, |reply| Control::JoinStates {
            devices,
            reply,
        })
        .await
        .map_err(TakeoverError::from)
    }

    async fn deliveries(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, Vec<FcntState>)>, TakeoverError> {
        Ok(self.delivered.listed(&handed.contract.dev_euis()))
    }

    async fn stand_down(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, FcntState)>, TakeoverError> {
        // Standby leaves the joins to the holder; answering is the default
        // again for the next takeover.
        self.answer_joins(handed, true).await?;
        let devices = handed.contract.dev_euis();
        let list = devices.clone();
        Control::ask(&self.control, |done| Control::Standby {
            devices: list,
            done,
        })
        .await?;
        // What this edge journaled before standing down reaches EdgeX
        // first, so the counters answered are final: the customer
        // publishes nothing this edge delivered.
        self.delivered
            .wait_settled(&devices, STAND_DOWN_DRAIN)
            .await;
        if let Some(edgex) = self.edgex.clone() {
            let names: Vec<String> = handed.sessions.iter().map(|s| s.name.clone()).collect();
            tokio::spawn(async move {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                edgex.down(&names).await
            });
        }
        let last = self.delivered.last();
        Ok(devices
            .iter()
            .filter_map(|e| last.get(e).map(|s| (*e, *s)))
            .collect())
    }
}
