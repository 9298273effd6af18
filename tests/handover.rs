//! The handover protocol between two edges on loopback, over mutual TLS:
//! the signed offer, the image transfer (chunked, resumable,
//! digest-checked), session sync, heartbeats, takeover on silence and
//! release under fencing epochs, with every refusal the issue lists that
//! these calls can meet. The takeover here is a recorder; the real
//! pipelines are exercised in tests/takeover.rs.

use std::sync::Arc;

use device_lorawan::handover::contract::{
    Activation, AtExpiry, Contract, ImageRef, Party, Resources, Revocation, SignedContract,
};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::pb::handover_client::HandoverClient;
use device_lorawan::handover::pb::*;
use device_lorawan::handover::provider::service::serve as serve_tls;
use device_lorawan::handover::provider::{Holder, Provider};
use device_lorawan::handover::receipt::{Detected, Frame, SignedReceipt, Verdict};
use device_lorawan::handover::takeover::{Handed, Takeover, TakeoverError};
use device_lorawan::handover::tls;
use device_lorawan::handover::transfer::{now, offer as offer_contract, send_image};
use device_lorawan::image::store::Digest;
use device_lorawan::lorawan::mac::{MacState, RxParams};
use device_lorawan::lorawan::{Eui64, FcntState};
use device_lorawan::metrics::Metrics;
use tonic::transport::Channel;
use tonic::Code;

struct Edges {
    customer: Identity,
    provider_pub: String,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    image: std::path::PathBuf,
    digest: String,
    size: u64,
    /// When the contract's validity starts: fixed, so the same offer is the same bytes.
    t0: u64,
    activation: Activation,
}

/// What the provider asked of its takeover, in order.
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<String>>,
    /// What `stand_down` reports as delivered by the provider.
    delivered: std::sync::Mutex<Vec<(Eui64, FcntState)>>,
    /// The MAC states the synced sessions carried, as the pipeline takes them.
    macs: std::sync::Mutex<Vec<Option<MacState>>>,
    /// The frames the provider delivered while it held the devices.
    frames: std::sync::Mutex<Vec<FcntState>>,
}

/// A MAC state: the device acknowledged TX power `tx_power`.
fn mac_state(tx_power: u8) -> MacState {
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

async fn serve(
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

async fn edges(image_size: usize) -> Edges {
    edges_with(image_size, None).await
}

async fn edges_with(image_size: usize, takeover: Option<Arc<dyn Takeover>>) -> Edges {
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
    fn contract(&self) -> Contract {
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
    async fn client(&self) -> HandoverClient<Channel> {
        self.client_as(&self.customer)
    }

    fn client_as(&self, id: &Identity) -> HandoverClient<Channel> {
        let key =
            device_lorawan::handover::identity::PublicKey::from_hex(&self.provider_pub).unwrap();
        tls::connect(&self.addr.to_string(), id, key).unwrap()
    }

    async fn offer(&self, c: &mut HandoverClient<Channel>) -> SignedContract {
        let offer = SignedContract::offer(self.contract(), &self.customer).unwrap();
        // Both signatures, the terms offered.
        offer_contract(c, &offer).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_then_a_resumable_digest_checked_transfer() {
    let e = edges(3_500_000).await;
    let mut c = e.client().await;
    let signed = e.offer(&mut c).await;

    // A first attempt stops after two chunks, as if the link dropped.
    let bytes = std::fs::read(&e.image).unwrap();
    let first = vec![
        ImageChunk {
            contract_id: signed.contract.id.clone(),
            digest: e.digest.clone(),
            total_size: e.size,
            offset: 0,
            data: bytes[..1 << 20].to_vec(),
        },
        ImageChunk {
            data: bytes[1 << 20..2 << 20].to_vec(),
            ..Default::default()
        },
    ];
    let err = c
        .transfer_image(tokio_stream::iter(first))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let at = c
        .image_offset(ImageOffsetRequest {
            contract_id: signed.contract.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((at.offset, at.complete), (2 << 20, false));

    // The retry sends only the rest.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let reply = send_image(&mut c, &signed, &e.image, 1 << 20, move |held, _| {
        s.lock().unwrap().push(held)
    })
    .await
    .unwrap();
    assert_eq!(
        (reply.digest.as_str(), reply.size),
        (e.digest.as_str(), e.size)
    );
    assert_eq!(
        seen.lock().unwrap().first(),
        Some(&(3 << 20)),
        "resumed after 2 MiB"
    );
    let store =
        device_lorawan::image::store::BlobStore::open(&e.dir.path().join("provider/images"))
            .unwrap();
    assert_eq!(
        store.verify(&Digest::parse(&e.digest).unwrap()).unwrap(),
        e.size
    );

    // A provider restart keeps the contract and the image.
    let again = Provider::open(
        Identity::generate().unwrap(),
        &e.dir.path().join("provider"),
        None,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    assert!(again.store().contains(&Digest::parse(&e.digest).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let e = edges(300_000).await;
    let mut c = e.client().await;

    // An altered offer, and one naming another provider.
    let mut altered = SignedContract::offer(e.contract(), &e.customer).unwrap();
    altered.contract.devices.push("70b3d57ed0000099".into());
    let mut other = e.contract();
    other.provider.public_key = Identity::generate().unwrap().public().to_hex();
    let other = SignedContract::offer(other, &e.customer).unwrap();
    for bad in [altered, other] {
        let err = offer_refused(&mut c, serde_json::to_string(&bad).unwrap()).await;
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    }
    let err = offer_refused(&mut c, "{}".into()).await;
    assert_eq!(err.code(), Code::InvalidArgument);

    // No transfer without an accepted contract.
    let chunk = |digest: &str, data: Vec<u8>| ImageChunk {
        contract_id: "bridge-monitor-1".into(),
        digest: digest.into(),
        total_size: e.size,
        offset: 0,
        data,
    };
    let bytes = std::fs::read(&e.image).unwrap();
    let err = transfer_refused(&mut c, chunk(&e.digest, bytes.clone())).await;
    assert_eq!(err.code(), Code::NotFound);

    e.offer(&mut c).await;
    // The same offer again is answered the same; other terms under its id are refused.
    e.offer(&mut c).await;
    let mut rival = e.contract();
    rival.devices = vec!["70b3d57ed0000042".into()];
    let rival = SignedContract::offer(rival, &e.customer).unwrap();
    let err = offer_refused(&mut c, serde_json::to_string(&rival).unwrap()).await;
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    // Another image than the contract's.
    let wrong = Digest::of(b"another image").to_string();
    let err = transfer_refused(&mut c, chunk(&wrong, bytes.clone())).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // A chunk over 1 MiB.
    let mut big = chunk(&e.digest, vec![0; (1 << 20) + 1]);
    big.total_size = e.size;
    let err = transfer_refused(&mut c, big).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // A tampered chunk: refused at the end, nothing stored, nothing to resume.
    let mut tampered = bytes.clone();
    tampered[1234] ^= 0x01;
    let err = transfer_refused(&mut c, chunk(&e.digest, tampered)).await;
    assert_eq!(err.code(), Code::DataLoss, "{err}");
    let at = c
        .image_offset(ImageOffsetRequest {
            contract_id: "bridge-monitor-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((at.offset, at.complete), (0, false));
    // And the genuine image then goes through.
    let err_free = c
        .transfer_image(tokio_stream::iter([chunk(&e.digest, bytes)]))
        .await
        .unwrap();
    assert_eq!(err_free.into_inner().size, e.size);
}

/// An offer of `signed_contract_json` that must be refused.
async fn offer_refused(
    c: &mut HandoverClient<Channel>,
    signed_contract_json: String,
) -> tonic::Status {
    c.offer(OfferRequest {
        signed_contract_json,
    })
    .await
    .unwrap_err()
}

/// A one-chunk image transfer that must be refused.
async fn transfer_refused(c: &mut HandoverClient<Channel>, chunk: ImageChunk) -> tonic::Status {
    c.transfer_image(tokio_stream::iter([chunk]))
        .await
        .unwrap_err()
}

/// A session for the contract's device, as a customer would sync it.
fn session(fcnt: u32) -> DeviceSession {
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

async fn status(c: &mut HandoverClient<Channel>) -> StatusReply {
    c.status(StatusRequest {
        contract_id: "bridge-monitor-1".into(),
    })
    .await
    .unwrap()
    .into_inner()
}

fn heartbeat(epoch: u64, fcnt: u32) -> HeartbeatRequest {
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
async fn watch(
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
async fn until_calls(recorder: &Recorder, n: usize) -> std::time::Duration {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_heartbeat_stream_or_a_goodbye_takes_over_at_once() {
    let recorder = Arc::new(Recorder::default());
    let mut e = edges_with(1000, Some(recorder.clone())).await;
    // Silence would take 30 s: anything sooner is the stream's doing.
    e.activation = Activation {
        heartbeat_ms: 10_000,
        missed_heartbeats: 3,
    };
    let mut c = e.client().await;
    e.offer(&mut c).await;
    let calls = || recorder.calls.lock().unwrap().clone();
    c.sync_sessions(SyncRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch: 1,
        devices: vec![session(3)],
    })
    .await
    .unwrap();

    // A customer that reconnects: the older stream's end says nothing.
    let (old, mut old_replies) = watch(&mut c, heartbeat(1, 5)).await.unwrap();
    assert_eq!(old_replies.message().await.unwrap().unwrap().epoch, 1);
    let (new, mut replies) = watch(&mut c, heartbeat(1, 6)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().epoch, 1);
    drop(old);
    assert!(old_replies.message().await.unwrap().is_none());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(calls(), ["arm 1"], "an old stream closed: no takeover");

    // The live stream closes (the process died): takeover at once, from
    // the last counter it reported.
    drop(new);
    let took = until_calls(&recorder, 2).await;
    assert_eq!(calls()[1], "activate 70b3d57ed0000001@Some(6)");
    assert!(took.as_secs() < 5, "took {took:?}");
    assert_eq!(status(&mut c).await.holder, "provider");

    // A stale epoch on a stream is refused, and is no death.
    let refused = match watch(&mut c, heartbeat(1, 7)).await {
        Err(s) => s,
        Ok(_) => panic!("a stale epoch opened a stream"),
    };
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");

    // Back to the customer, then a clean stop: the goodbye carries the
    // final counter and the provider takes over without waiting.
    c.release(ReleaseRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch: 3,
    })
    .await
    .unwrap();
    let (tx, mut replies) = watch(&mut c, heartbeat(3, 8)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().epoch, 3);
    let mut bye = heartbeat(3, 9);
    bye.leaving = true;
    tx.send(bye).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().epoch, 3);
    until_calls(&recorder, 4).await;
    assert_eq!(calls()[3], "activate 70b3d57ed0000001@Some(9)");
    let st = status(&mut c).await;
    assert_eq!((st.epoch, st.holder.as_str()), (4, "provider"));
    // Its stream closing afterwards changes nothing.
    drop(tx);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(calls().len(), 4, "{:?}", calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_takes_over_and_release_hands_back_under_fencing_epochs() {
    let recorder = Arc::new(Recorder::default());
    let mut e = edges_with(1000, Some(recorder.clone())).await;
    // 3 x 400 ms: heartbeats every 50 ms keep well inside it even on a
    // loaded machine; silence passes it in about a second.
    e.activation = Activation {
        heartbeat_ms: 400,
        missed_heartbeats: 3,
    };
    let limit_ms: u64 = 3 * 400;
    let mut c = e.client().await;
    e.offer(&mut c).await;
    let calls = || recorder.calls.lock().unwrap().clone();

    // Without sessions there is nothing to take over, however long the
    // silence: wait until the provider itself has seen it past the limit.
    let t = std::time::Instant::now();
    while status(&mut c).await.silent_ms <= limit_ms + 200 {
        assert!(
            t.elapsed().as_secs() < 10,
            "the provider never saw the silence"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let st = status(&mut c).await;
    assert_eq!(
        (st.epoch, st.holder.as_str(), st.sessions_synced),
        (1, "customer", false)
    );
    assert!(calls().is_empty(), "{:?}", calls());

    // Sessions arm the provider; heartbeats keep it from taking over.
    let sync = |epoch| SyncRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch,
        devices: vec![session(3)],
    };
    c.sync_sessions(sync(1)).await.unwrap();
    for fcnt in 1..=10 {
        c.heartbeat(heartbeat(1, fcnt)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(calls(), ["arm 1"]);

    // Silence past the limit: the provider takes over from frame 10 on, epoch 2.
    let t = std::time::Instant::now();
    while calls().len() < 2 {
        assert!(t.elapsed().as_secs() < 5, "no takeover: {:?}", calls());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(calls(), ["arm 1", "activate 70b3d57ed0000001@Some(10)"]);
    let st = status(&mut c).await;
    assert_eq!((st.epoch, st.holder.as_str()), (2, "provider"));

    // The customer's old epoch is stale now: heartbeats and syncs are refused.
    let err = c.heartbeat(heartbeat(1, 11)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("stale epoch 1"), "{err}");
    let err = c.sync_sessions(sync(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    // An epoch never granted is refused too.
    let err = c.heartbeat(heartbeat(7, 11)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    // Release needs an epoch above the provider's.
    let release = |epoch| ReleaseRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch,
    };
    let err = c.release(release(2)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    *recorder.delivered.lock().unwrap() = vec![(
        Eui64::from_u64(0x70b3d57ed0000001),
        FcntState {
            last: Some(14),
            epoch: 0,
        },
    )];
    let st = |fcnt| FcntState {
        last: Some(fcnt),
        epoch: 0,
    };
    *recorder.frames.lock().unwrap() = vec![st(11), st(12), st(14)];
    let reply = c.release(release(3)).await.unwrap().into_inner();
    assert_eq!(reply.epoch, 3);

    // The receipt: signed by the provider, the frames it delivered after
    // the counter it took over from, chained.
    let issued: SignedReceipt = serde_json::from_str(&reply.receipt_json).unwrap();
    issued.verify(false).unwrap();
    let r = &issued.receipt;
    assert_eq!((r.contract_id.as_str(), r.epoch), ("bridge-monitor-1", 2));
    assert_eq!(r.detected, Detected::Silent);
    assert!(r.takeover_ms >= limit_ms, "{}", r.takeover_ms);
    assert!(r.from_ms <= r.to_ms);
    let d = &r.devices[0];
    assert_eq!(d.after, Some(Frame { epoch: 0, fcnt: 10 }));
    assert_eq!(
        (d.count, d.runs.len(), d.runs[0].first, d.runs[1].last),
        (3, 2, 11, 14)
    );
    // The customer heard 13 itself: a dispute naming it. Its answer is
    // kept by the provider beside its copy; a changed receipt is refused.
    let eui = Eui64::from_u64(0x70b3d57ed0000001);
    let verdict = r.judge(&[(eui, st(12)), (eui, st(13))]);
    assert!(
        matches!(&verdict, Verdict::Disputed { missing, repeated, .. } if missing.len() == 1 && missing[0].1.fcnt == 13 && repeated.is_empty()),
        "{verdict:?}"
    );
    let settle = |r: &SignedReceipt| SettleRequest {
        contract_id: "bridge-monitor-1".into(),
        receipt_json: serde_json::to_string(r).unwrap(),
    };
    let mut forged = issued.clone();
    forged.receipt.devices[0].count = 4;
    let forged = forged.answer(&e.customer, Verdict::Accepted, None);
    let err = c.settle(settle(&forged)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let unanswered = c.settle(settle(&issued)).await.unwrap_err();
    assert_eq!(unanswered.code(), Code::InvalidArgument, "{unanswered}");
    let answered = issued.clone().answer(&e.customer, verdict, None);
    c.settle(settle(&answered)).await.unwrap();
    let kept: SignedReceipt = serde_json::from_slice(
        &std::fs::read(
            e.dir
                .path()
                .join("provider/receipts/bridge-monitor-1-2.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(kept, answered);
    kept.verify(true).unwrap();
    assert_eq!(reply.delivered.len(), 1);
    assert_eq!(
        reply.delivered[0].fcnt,
        Some(14),
        "the provider's own deliveries count"
    );
    assert_eq!(calls().last().unwrap(), "stand_down 1");
    // MAC state travelled both ways: the customer's at the sync, the
    // provider's at the release.
    assert_eq!(*recorder.macs.lock().unwrap(), vec![Some(mac_state(3))]);
    assert_eq!(reply.macs.len(), 1);
    assert_eq!(reply.macs[0].dev_eui, 0x70b3d57ed0000001);
    let back: MacState = serde_json::from_str(&reply.macs[0].mac_state).unwrap();
    assert_eq!(back, mac_state(5));
    c.heartbeat(heartbeat(3, 15)).await.unwrap();
    let st = status(&mut c).await;
    assert_eq!((st.epoch, st.holder.as_str()), (3, "customer"));

    // A restarted provider keeps epoch, holder and sessions.
    let again = Provider::open(
        Identity::generate().unwrap(),
        &e.dir.path().join("provider"),
        None,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let st = &again.status()[0];
    assert_eq!(st.epoch, 3);
    assert!(st.sessions_synced);
    let sessions =
        std::fs::metadata(e.dir.path().join("provider/sessions/bridge-monitor-1.pb")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        sessions.permissions().mode() & 0o777,
        0o600,
        "sessions hold keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_tls_identity_is_refused() {
    let e = edges(1000).await;
    let mut c = e.client().await;
    e.offer(&mut c).await;

    // Another edge, with a valid TLS identity of its own, is not the customer.
    let mallory = Identity::generate().unwrap();
    let mut m = e.client_as(&mallory);
    let err = m
        .image_offset(ImageOffsetRequest {
            contract_id: "bridge-monitor-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("not its customer"), "{err}");
    let err = m.heartbeat(heartbeat(1, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // Nor may it offer a contract in the customer's name.
    let offer = SignedContract::offer(e.contract(), &e.customer).unwrap();
    let err = offer_refused(&mut m, serde_json::to_string(&offer).unwrap()).await;
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // A server that is not the contract's provider fails the customer's
    // handshake: no request reaches it.
    let impostor = Identity::generate().unwrap();
    let mut wrong = tls::connect(&e.addr.to_string(), &e.customer, impostor.public()).unwrap();
    let err = wrong
        .status(StatusRequest {
            contract_id: "bridge-monitor-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let chain = format!("{err:?}");
    assert!(chain.contains("not the contract's"), "{chain}");

    // A plain-TCP client gets nowhere either.
    // (Its connection may be refused at once, or its first call.)
    let served = match HandoverClient::connect(format!("http://{}", e.addr)).await {
        Err(_) => false,
        Ok(mut plain) => plain
            .status(StatusRequest {
                contract_id: "bridge-monitor-1".into(),
            })
            .await
            .is_ok(),
    };
    assert!(!served, "a plain-TCP client was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_that_ends_while_the_provider_holds_stands_it_down_by_its_terms() {
    let recorder = Arc::new(Recorder::default());
    let e = edges_with(1000, Some(recorder.clone())).await;
    let mut c = e.client().await;
    // Valid for a few seconds more, and its keys deleted at the end.
    let mut terms = e.contract();
    terms.not_after = now() + 3;
    terms.at_expiry = AtExpiry::Release;
    let offer = SignedContract::offer(terms, &e.customer).unwrap();
    offer_contract(&mut c, &offer).await.unwrap();
    c.sync_sessions(SyncRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch: 1,
        devices: vec![session(3)],
    })
    .await
    .unwrap();
    let sessions = e.dir.path().join("provider/sessions/bridge-monitor-1.pb");
    assert!(sessions.exists());
    // The customer dies: the provider holds the devices.
    let (tx, mut replies) = watch(&mut c, heartbeat(1, 4)).await.unwrap();
    replies.message().await.unwrap().unwrap();
    drop(tx);
    until_calls(&recorder, 2).await;
    assert_eq!(status(&mut c).await.holder, "provider");
    // The contract ends: the provider stands down, issues the holding's
    // receipt (unanswered: the customer is away) and deletes the keys.
    let t = std::time::Instant::now();
    while !recorder
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.starts_with("stand_down"))
    {
        assert!(
            t.elapsed().as_secs() < 10,
            "{:?}",
            recorder.calls.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let t = std::time::Instant::now();
    while sessions.exists() {
        assert!(t.elapsed().as_secs() < 5, "the sessions were kept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let receipt: SignedReceipt = serde_json::from_slice(
        &std::fs::read(
            e.dir
                .path()
                .join("provider/receipts/bridge-monitor-1-2.json"),
        )
        .unwrap(),
    )
    .unwrap();
    receipt.verify(false).unwrap();
    assert_eq!(receipt.receipt.detected, Detected::Closed);
    // Both what this provider remembers and what it reports say so.
    let p = Provider::open(
        Identity::generate().unwrap(),
        &e.dir.path().join("provider"),
        None,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let st = &p.status()[0];
    assert!(st.ended);
    assert_eq!(
        (st.holder, st.epoch, st.sessions_synced),
        (Holder::Customer, 3, false)
    );
    // The customer's calls are refused now: the contract is over.
    let err = c
        .release(ReleaseRequest {
            contract_id: "bridge-monitor-1".into(),
            epoch: 4,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_and_revocation_are_signed_by_both_and_a_revocation_stands_the_provider_down() {
    let recorder = Arc::new(Recorder::default());
    let e = edges_with(1000, Some(recorder.clone())).await;
    let mut c = e.client().await;
    let accepted = e.offer(&mut c).await;

    // Renewed: the same agreement, a later end; counter-signed.
    let mut terms = accepted.contract.clone();
    terms.not_after += 86_400;
    let renewal = SignedContract::offer(terms.clone(), &e.customer).unwrap();
    let reply = c
        .amend(OfferRequest {
            signed_contract_json: serde_json::to_string(&renewal).unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    let renewed: SignedContract = serde_json::from_str(&reply.signed_contract_json).unwrap();
    renewed.verify(now()).unwrap();
    assert_eq!(
        renewed.contract.not_after,
        accepted.contract.not_after + 86_400
    );
    // Another agreement under its id (other devices) is no renewal.
    let mut other = terms.clone();
    other.devices.push("70b3d57ed0000002".into());
    let err = c
        .amend(OfferRequest {
            signed_contract_json: serde_json::to_string(
                &SignedContract::offer(other, &e.customer).unwrap(),
            )
            .unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // Renewed by someone else: refused.
    let stranger = Identity::generate().unwrap();
    let err = e
        .client_as(&stranger)
        .amend(OfferRequest {
            signed_contract_json: serde_json::to_string(&renewal).unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // The provider holds the devices when the customer revokes.
    c.sync_sessions(SyncRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch: 1,
        devices: vec![session(3)],
    })
    .await
    .unwrap();
    let (tx, mut replies) = watch(&mut c, heartbeat(1, 4)).await.unwrap();
    replies.message().await.unwrap().unwrap();
    drop(tx);
    until_calls(&recorder, 2).await;
    let bytes = renewed.contract.revocation_bytes();
    // A revocation not signed by the customer is refused.
    let err = c
        .revoke(RevokeRequest {
            contract_id: "bridge-monitor-1".into(),
            customer_signature: hex::encode(stranger.sign(&bytes)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let customer_signature = hex::encode(e.customer.sign(&bytes));
    let reply = c
        .revoke(RevokeRequest {
            contract_id: "bridge-monitor-1".into(),
            customer_signature: customer_signature.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    Revocation {
        contract: renewed.contract.clone(),
        at: now(),
        customer_signature,
        provider_signature: reply.provider_signature,
    }
    .verify()
    .unwrap();
    assert!(
        recorder
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("stand_down")),
        "the provider stood down"
    );
    let provider = e.dir.path().join("provider");
    assert!(
        provider.join("receipts/bridge-monitor-1-2.json").exists(),
        "the holding's receipt"
    );
    assert!(provider.join("revoked/bridge-monitor-1.json").exists());
    assert!(
        !provider.join("sessions/bridge-monitor-1.pb").exists(),
        "its keys are gone"
    );
    let err = c
        .status(StatusRequest {
            contract_id: "bridge-monitor-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_told_to_stand_by_does_not_take_over_until_armed() {
    let recorder = Arc::new(Recorder::default());
    let mut e = edges_with(1000, Some(recorder.clone())).await;
    e.activation = Activation {
        heartbeat_ms: 200,
        missed_heartbeats: 2,
    };
    let mut c = e.client().await;
    e.offer(&mut c).await;
    c.sync_sessions(SyncRequest {
        contract_id: "bridge-monitor-1".into(),
        epoch: 1,
        devices: vec![session(3)],
    })
    .await
    .unwrap();
    // A provider ranked above this one is reachable: the customer's crash
    // and its silence leave this one standing by.
    let mut standby = heartbeat(1, 4);
    standby.standby = true;
    let (tx, mut replies) = watch(&mut c, standby).await.unwrap();
    replies.message().await.unwrap().unwrap();
    drop(tx);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(*recorder.calls.lock().unwrap(), ["arm 1"], "stood by");
    // Armed again (the one above was lost), then the customer crashes.
    let (tx, mut replies) = watch(&mut c, heartbeat(1, 5)).await.unwrap();
    replies.message().await.unwrap().unwrap();
    drop(tx);
    until_calls(&recorder, 2).await;
    assert_eq!(
        recorder.calls.lock().unwrap()[1],
        "activate 70b3d57ed0000001@Some(5)"
    );
}
