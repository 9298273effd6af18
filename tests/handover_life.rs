//! A handover contract's life against a provider on loopback (its takeover
//! a recorder): a heartbeat stream that closes or says goodbye, a provider
//! told to stand by for a higher-ranked one, a contract that ends while the
//! provider holds the devices, renewal and revocation signed by both.

mod handover_edges;

use std::sync::Arc;

use device_lorawan::handover::contract::{Activation, AtExpiry, Revocation, SignedContract};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::pb::*;
use device_lorawan::handover::provider::{Holder, Provider};
use device_lorawan::handover::receipt::{Detected, SignedReceipt};
use device_lorawan::handover::transfer::{now, offer as offer_contract};
use device_lorawan::metrics::Metrics;
use handover_edges::*;
use tonic::Code;

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
    sync(&mut c, 1).await;

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
    sync(&mut c, 1).await;
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
    sync(&mut c, 1).await;
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
    sync(&mut c, 1).await;
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
