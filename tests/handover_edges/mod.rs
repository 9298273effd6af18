//! A provider edge on loopback for the handover's protocol tests: its
//! takeover a recorder of what it was asked, and a customer's client over
//! mutual TLS (`tests/handover.rs`, `tests/handover_life.rs`).
#![allow(dead_code)]

use std::sync::Arc;

use device_lorawan::handover::contract::{
    Activation, Contract, ImageRef, Party, Resources, SignedContract,
};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::pb::handover_client::HandoverClient;
use device_lorawan::handover::pb::*;
use device_lorawan::handover::provider::service::serve as serve_tls;
use device_lorawan::handover::provider::Provider;
use device_lorawan::handover::takeover::{Handed, Takeover, TakeoverError};
use device_lorawan::handover::tls;
use device_lorawan::handover::transfer::{now, offer as offer_contract};
use device_lorawan::image::store::Digest;
use device_lorawan::lorawan::mac::{MacState, RxParams};
use device_lorawan::lorawan::{Eui64, FcntState};
use device_lorawan::metrics::Metrics;
use tonic::transport::Channel;

pub struct Edges {
    pub customer: Identity,
    pub provider_pub: String,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub image: std::path::PathBuf,
    pub digest: String,
    pub size: u64,
    /// When the contract's validity starts: fixed, so the same offer is the same bytes.
    pub t0: u64,
    pub activation: Activation,
}

/// What the provider asked of its takeover, in order.
#[derive(Default)]
pub struct Recorder {
    pub calls: std::sync::Mutex<Vec<String>>,
    /// What `stand_down` reports as delivered by the provider.
    pub delivered: std::sync::Mutex<Vec<(Eui64, FcntState)>>,
    /// The MAC states the synced sessions carried, as the pipeline takes them.
    pub macs: std::sync::Mutex<Vec<Option<MacState>>>,
    /// The frames the provider delivered while it held the devices.
    pub frames: std::sync::Mutex<Vec<FcntState>>,
}

/// A MAC state: the device acknowledged TX power `tx_power`.
pub fn mac_state(tx_power: u8) -> MacState {
    let mut s = MacState::new(
        0,
        RxParams {
            rx1_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            rx2_frequency: 869_525_000,
        },
        1_700_000_000,
    );
    s.tx_power = tx_power;
    s
}

#[tonic::async_trait]
impl Takeover for Recorder {
    async fn arm(&self, handed: Handed<'_>) -> Result<(), TakeoverError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("arm {}", handed.sessions.len()));
        for s in handed.sessions {
            let a = device_lorawan::handover::takeover::adopted(s)?;
            self.macs.lock().unwrap().push(a.mac);
        }
        Ok(())
    }
    async fn mac_states(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, MacState)>, TakeoverError> {
        // The provider ran the devices: ADR moved them on to power 5.
        Ok(handed
            .contract
            .dev_euis()
            .into_iter()
            .map(|e| (e, mac_state(5)))
            .collect())
    }
    async fn activate(
        &self,
        _handed: Handed<'_>,
        delivered: &[(Eui64, FcntState)],
    ) -> Result<(), TakeoverError> {
        let d: Vec<String> = delivered
            .iter()
            .map(|(e, s)| format!("{e}@{:?}", s.last))
            .collect();
        self.calls
            .lock()
            .unwrap()
            .push(format!("activate {}", d.join(",")));
        Ok(())
    }
    async fn deliveries(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, Vec<FcntState>)>, TakeoverError> {
        let frames = self.frames.lock().unwrap().clone();
        Ok(handed
            .contract
            .dev_euis()
            .into_iter()
            .map(|e| (e, frames.clone()))
            .collect())
    }
    async fn stand_down(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, FcntState)>, TakeoverError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("stand_down {}", handed.contract.dev_euis().len()));
        Ok(self.delivered.lock().unwrap().clone())
    }
}

pub async fn serve(
    identity: Identity,
    dir: &std::path::Path,
    takeover: Option<Arc<dyn Takeover>>,
) -> std::net::SocketAddr {
    let provider =
        Arc::new(Provider::open(identity, dir, takeover, Arc::new(Metrics::default())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(provider.clone(), listener));
    tokio::spawn(provider.run());
    addr
}

pub async fn edges(image_size: usize) -> Edges {
    edges_with(image_size, None).await
}

pub async fn edges_with(image_size: usize, takeover: Option<Arc<dyn Takeover>>) -> Edges {
    let dir = tempfile::tempdir().unwrap();
    let provider = Identity::generate().unwrap();
    let provider_pub = provider.public().to_hex();
    let addr = serve(provider, &dir.path().join("provider"), takeover).await;
    let bytes: Vec<u8> = (0..image_size).map(|i| (i * 7 % 251) as u8).collect();
    let image = dir.path().join("image.tar");
    std::fs::write(&image, &bytes).unwrap();
    Edges {
        customer: Identity::generate().unwrap(),
        provider_pub,
        addr,
        image,
        digest: Digest::of(&bytes).to_string(),
        size: bytes.len() as u64,
        dir,
        t0: now() - 10,
        activation: Activation::default(),
    }
}

impl Edges {
    pub fn contract(&self) -> Contract {
        Contract {
            id: "bridge-monitor-1".into(),
            customer: Party {
                id: "edge-a".into(),
                public_key: self.customer.public().to_hex(),
                address: "127.0.0.1:1".into(),
            },
            provider: Party {
                id: "edge-b".into(),
                public_key: self.provider_pub.clone(),
                address: self.addr.to_string(),
            },
            image: ImageRef {
                digest: self.digest.clone(),
                cid: "bafy".into(),
                size: self.size,
            },
            devices: vec!["70b3d57ed0000001".into()],
            activation: self.activation,
            resources: Resources {
                memory_bytes: 64 << 20,
                cpu_millis: 500,
            },
            not_before: self.t0,
            not_after: self.t0 + 3600,
            at_expiry: Default::default(),
            rank: 0,
        }
    }

    /// A client authenticated as the customer, pinning the provider's key.
    pub async fn client(&self) -> HandoverClient<Channel> {
        self.client_as(&self.customer)
    }

    pub fn client_as(&self, id: &Identity) -> HandoverClient<Channel> {
        let key =
            device_lorawan::handover::identity::PublicKey::from_hex(&self.provider_pub).unwrap();
        tls::connect(&self.addr.to_string(), id, key).unwrap()
    }

    pub async fn offer(&self, c: &mut HandoverClient<Channel>) -> SignedContract {
        let offer = SignedContract::offer(self.contract(), &self.customer).unwrap();
        // Both signatures, the terms offered.
        offer_contract(c, &offer).await.unwrap()
    }
}

pub fn session(fcnt: u32) -> DeviceSession {
    let profiles = device_lorawan::codec::profile::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles"
    )))
    .unwrap();
    let profile = profiles.values().next().unwrap();
    DeviceSession {
        name: "bridge-tilt-1".into(),
        dev_eui: 0x70b3d57ed0000001,
        dev_addr: 0x2601_1bda,
        nwk_s_key: vec![1; 16],
        app_s_key: vec![2; 16],
        profile_json: serde_json::to_string(profile).unwrap(),
        codec: "cayenne-lpp".into(),
        fcnt_policy: "reset-tolerant".into(),
        counter: Some(Counter {
            dev_eui: 0x70b3d57ed0000001,
            epoch: 0,
            fcnt: Some(fcnt),
            fcnt_down: 0,
        }),
        rx_windows: None,
        region: String::new(),
        otaa: None,
        mac_state: serde_json::to_string(&mac_state(3)).unwrap(),
    }
}

pub async fn status(c: &mut HandoverClient<Channel>) -> StatusReply {
    c.status(StatusRequest {
        contract_id: "bridge-monitor-1".into(),
    })
    .await
    .unwrap()
    .into_inner()
}

pub fn heartbeat(epoch: u64, fcnt: u32) -> HeartbeatRequest {
    HeartbeatRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch,
        delivered: vec![Counter {
            dev_eui: 0x70b3d57ed0000001,
            epoch: 0,
            fcnt: Some(fcnt),
            fcnt_down: 0,
        }],
        leaving: false,
        standby: false,
    }
}

/// A heartbeat stream opened with `first`: its sender (drop it to close the
/// stream, as a dying process's socket does) and the provider's answers.
pub async fn watch(
    c: &mut HandoverClient<Channel>,
    first: HeartbeatRequest,
) -> Result<
    (
        tokio::sync::mpsc::Sender<HeartbeatRequest>,
        tonic::Streaming<HeartbeatReply>,
    ),
    tonic::Status,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(first).await.unwrap();
    let replies = c
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, replies))
}

/// Waits (bounded) for the recorder's `n`th call and returns how long it took.
pub async fn until_calls(recorder: &Recorder, n: usize) -> std::time::Duration {
    let t = std::time::Instant::now();
    while recorder.calls.lock().unwrap().len() < n {
        assert!(
            t.elapsed().as_secs() < 10,
            "no call {n}: {:?}",
            recorder.calls.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    t.elapsed()
}

/// The customer's sessions (one device, counter at `fcnt` 3) under `epoch`.
pub async fn sync(c: &mut HandoverClient<Channel>, epoch: u64) {
    c.sync_sessions(SyncRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch,
        devices: vec![session(3)],
    })
    .await
    .unwrap();
}
