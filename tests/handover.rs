//! The handover protocol between two edges on loopback, over mutual TLS:
//! the signed offer, the image transfer (chunked, resumable,
//! digest-checked), session sync, heartbeats, takeover on silence and
//! release under fencing epochs, with every refusal the issue lists that
//! these calls can meet. The takeover here is a recorder; the real
//! pipelines are exercised in tests/takeover.rs; the contract's life
//! (stream detection, ranking, expiry, renewal, revocation) in
//! tests/handover_life.rs.

mod handover_edges;

use std::sync::Arc;

use device_lorawan::handover::contract::{Activation, SignedContract};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::pb::handover_client::HandoverClient;
use device_lorawan::handover::pb::*;
use device_lorawan::handover::provider::Provider;
use device_lorawan::handover::receipt::{Detected, Frame, SignedReceipt, Verdict};
use device_lorawan::handover::tls;
use device_lorawan::handover::transfer::send_image;
use device_lorawan::image::store::Digest;
use device_lorawan::lorawan::mac::MacState;
use device_lorawan::lorawan::{Eui64, FcntState};
use device_lorawan::metrics::Metrics;
use tonic::transport::Channel;
use tonic::Code;

use handover_edges::*;

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
    let verdict = r.judge(&[(eui, st(12)), (eui, st(13))], &[]);
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
