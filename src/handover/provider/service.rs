//! The provider as a gRPC service: each call checked against its contract
//! and the fencing epoch, then applied to the [`Provider`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::holding::Holding;
use super::{internal, Entry, Provider};
use crate::handover::contract::SignedContract;
use crate::handover::pb::handover_server::{Handover, HandoverServer};
use crate::handover::pb::*;
use crate::handover::receipt::{SignedReceipt, Verdict};
use crate::handover::takeover::{counter_msg, counter_of, Handed};
use crate::handover::tls::PeerKey;
use crate::handover::transfer::{image_digest, now, receive};

/// A request carrying only the caller's key, for checks made after a
/// stream's first message.
fn as_peer(key: crate::handover::identity::PublicKey) -> Request<()> {
    let mut probe = Request::new(());
    probe
        .extensions_mut()
        .insert(crate::handover::tls::PeerInfo { key, addr: None });
    probe
}

impl Provider {
    /// A heartbeat of contract `id` (on stream `watch`, if any): proof of
    /// life, the counters the customer delivered, and perhaps its goodbye.
    fn beat(
        &self,
        id: &str,
        hb: &HeartbeatRequest,
        watch: Option<u64>,
    ) -> Result<HeartbeatReply, Status> {
        if hb.contract_id != id {
            return Err(Status::invalid_argument(
                "one heartbeat stream speaks for one contract",
            ));
        }
        self.check_epoch(id, hb.epoch)?;
        let mut m = self.entries.lock().expect("entries");
        let e = m
            .get_mut(id)
            .ok_or_else(|| Status::not_found(id.to_owned()))?;
        e.alive();
        e.standby = hb.standby;
        e.holding.note(hb.delivered.iter().map(counter_of));
        if let Some(w) = watch {
            e.watch = w;
        }
        let epoch = e.holding.epoch;
        if hb.leaving {
            e.stopped(super::Gone::Leaving);
            drop(m);
            tracing::info!(contract = %id, "the customer is stopping: taking its devices over now");
            self.wake.notify_one();
        }
        Ok(HeartbeatReply { epoch })
    }

    /// This provider as a gRPC service.
    pub fn service(self: &Arc<Self>) -> HandoverServer<Shared> {
        HandoverServer::new(Shared(self.clone()))
    }
}

/// A provider shared between the gRPC service and its watchdog.
pub struct Shared(pub Arc<Provider>);

/// Serve `provider` on `listener` over mutual TLS until the task is dropped.
pub async fn serve(
    provider: Arc<Provider>,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let config = crate::handover::tls::server_config(&provider.identity)?;
    tonic::transport::Server::builder()
        .add_service(provider.service())
        .serve_with_incoming(crate::handover::tls::incoming(listener, config))
        .await?;
    Ok(())
}

#[tonic::async_trait]
impl Handover for Shared {
    async fn offer(&self, req: Request<OfferRequest>) -> Result<Response<OfferReply>, Status> {
        let p = &self.0;
        let offer: SignedContract = serde_json::from_str(&req.get_ref().signed_contract_json)
            .map_err(|e| Status::invalid_argument(format!("not a signed contract: {e}")))?;
        let peer = PeerKey::of(&req)?;
        if Some(peer) != offer.customer_key() {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            return Err(Status::permission_denied(format!(
                "the caller {} is not the offer's customer",
                peer.to_hex()
            )));
        }
        // A contract id names one agreement: the same offer again is
        // answered as before; a different one under that id is refused.
        let known = p
            .entries
            .lock()
            .expect("entries")
            .get(&offer.contract.id)
            .map(|e| e.signed.clone());
        if let Some(known) = known {
            if known.contract == offer.contract
                && known.customer_signature == offer.customer_signature
            {
                return Ok(Response::new(OfferReply {
                    signed_contract_json: serde_json::to_string_pretty(&known).map_err(internal)?,
                }));
            }
            return Err(Status::already_exists(format!(
                "contract {} exists with other terms",
                offer.contract.id
            )));
        }
        let signed = offer.accept(&p.identity, now()).map_err(|e| {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            Status::permission_denied(format!("offer refused: {e}"))
        })?;
        let json = serde_json::to_string_pretty(&signed).map_err(internal)?;
        let id = signed.contract.id.clone();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Status::invalid_argument(
                "contract ids are letters, digits, - and _",
            ));
        }
        let holding = Holding {
            epoch: 1,
            ..Holding::default()
        };
        p.save_holding(&id, &holding).map_err(internal)?;
        let path = p.dir.join("contracts").join(format!("{id}.json"));
        crate::fsutil::write_atomic(&path, json.as_bytes(), 0o600).map_err(internal)?;
        tracing::info!(contract = %id, customer = %signed.contract.customer.id, devices = signed.contract.devices.len(), "handover contract accepted");
        p.entries
            .lock()
            .expect("entries")
            .insert(id, Entry::new(signed, holding, None));
        Ok(Response::new(OfferReply {
            signed_contract_json: json,
        }))
    }

    async fn image_offset(
        &self,
        req: Request<ImageOffsetRequest>,
    ) -> Result<Response<ImageOffsetReply>, Status> {
        let c = self.0.authorised(&req, &req.get_ref().contract_id)?;
        let (offset, complete) = self.0.store.held(&image_digest(&c)?);
        Ok(Response::new(ImageOffsetReply { offset, complete }))
    }

    async fn transfer_image(
        &self,
        req: Request<Streaming<ImageChunk>>,
    ) -> Result<Response<TransferReply>, Status> {
        let peer = PeerKey::of(&req)?;
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty transfer"))?;
        let c = self.0.authorised(&as_peer(peer), &first.contract_id)?;
        receive(&self.0.store, &c, first, stream)
            .await
            .map(Response::new)
    }

    async fn sync_sessions(
        &self,
        req: Request<SyncRequest>,
    ) -> Result<Response<SyncReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        let c = p.authorised(&req, &id)?;
        let sync = req.into_inner();
        p.check_epoch(&id, sync.epoch)?;
        Provider::check_sessions(&c, &sync.devices)?;
        let path = p.dir.join("sessions").join(format!("{id}.pb"));
        crate::fsutil::write_atomic(&path, &sync.encode_to_vec(), 0o600).map_err(internal)?;
        if let Some(t) = &p.takeover {
            let handed = Handed {
                contract: &c,
                sessions: &sync.devices,
            };
            t.arm(handed)
                .await
                .map_err(|e| Status::internal(format!("arming the devices: {e}")))?;
        }
        let mut m = p.entries.lock().expect("entries");
        let e = m
            .get_mut(&id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        let first = e.sessions.is_none();
        e.sessions = Some(sync.devices);
        // The customer speaking is a sign of life, as a heartbeat is.
        e.alive();
        if first {
            tracing::info!(contract = %id, devices = e.sessions.as_ref().map_or(0, Vec::len), "customer sessions synced: armed");
        }
        Ok(Response::new(SyncReply {
            epoch: e.holding.epoch,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        p.authorised(&req, &id)?;
        p.beat(&id, &req.into_inner(), None).map(Response::new)
    }

    type WatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<HeartbeatReply, Status>> + Send + 'static>,
    >;

    async fn watch(
        &self,
        req: Request<Streaming<HeartbeatRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let p = self.0.clone();
        let peer = PeerKey::of(&req)?;
        let mut incoming = req.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty heartbeat stream"))?;
        let id = first.contract_id.clone();
        p.authorised(&as_peer(peer), &id)?;
        let watch = p.watches.fetch_add(1, Relaxed);
        let reply = p.beat(&id, &first, Some(watch))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let _ = tx.try_send(Ok(reply));
        tokio::spawn(async move {
            loop {
                match incoming.message().await {
                    Ok(Some(hb)) => match p.beat(&id, &hb, Some(watch)) {
                        Ok(r) => {
                            // A reply the customer does not read yet is
                            // dropped: the next one says the same.
                            let _ = tx.try_send(Ok(r));
                        }
                        Err(s) => {
                            // Refused (a stale epoch): the customer lives,
                            // and learns it must take back.
                            let _ = tx.send(Err(s)).await;
                            return;
                        }
                    },
                    Ok(None) | Err(_) => {
                        p.watch_ended(&id, watch, super::Gone::Closed);
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn release(
        &self,
        req: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        p.authorised(&req, &id)?;
        let epoch = req.get_ref().epoch;
        let _one = p.transitions.lock().await;
        let (current, signed, sessions) = {
            let m = p.entries.lock().expect("entries");
            let e = &m[&id];
            (
                e.holding.clone(),
                e.signed.clone(),
                e.sessions.clone().unwrap_or_default(),
            )
        };
        let granted = current.fence().release(epoch).map_err(|r| {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            Status::failed_precondition(r.to_string())
        })?;
        let mut holding = current.clone();
        let mut joins = Vec::new();
        let mut macs = Vec::new();
        let mut receipt_json = String::new();
        if granted.stand_down {
            let t = p
                .takeover
                .as_ref()
                .ok_or_else(|| Status::internal("no takeover"))?;
            let mine = t
                .stand_down(Handed {
                    contract: &signed,
                    sessions: &sessions,
                })
                .await
                .map_err(|e| Status::internal(format!("standing down: {e}")))?;
            holding.note(mine);
            joins = t
                .join_states(Handed {
                    contract: &signed,
                    sessions: &sessions,
                })
                .await
                .map_err(|e| Status::internal(format!("join states: {e}")))?
                .into_iter()
                .map(|(eui, s)| crate::handover::pb::JoinStateMsg {
                    dev_eui: eui.as_u64(),
                    join_state: serde_json::to_string(&s).expect("join state serialises"),
                })
                .collect();
            macs = t
                .mac_states(Handed {
                    contract: &signed,
                    sessions: &sessions,
                })
                .await
                .map_err(|e| Status::internal(format!("MAC states: {e}")))?
                .into_iter()
                .map(|(eui, s)| crate::handover::pb::MacStateMsg {
                    dev_eui: eui.as_u64(),
                    mac_state: serde_json::to_string(&s).expect("MAC state serialises"),
                })
                .collect();
            let frames = t
                .deliveries(Handed {
                    contract: &signed,
                    sessions: &sessions,
                })
                .await
                .map_err(|e| Status::internal(format!("deliveries: {e}")))?;
            if let Some(taken) = holding.taken.take() {
                let r = p.receipt(
                    &signed,
                    current.epoch,
                    taken,
                    frames,
                    t.lists_every_delivery(),
                );
                let path =
                    crate::handover::receipt::save(&p.receipts_dir(), &r).map_err(internal)?;
                tracing::info!(contract = %id, receipt = %path.display(), "receipt issued");
                receipt_json = serde_json::to_string(&r).map_err(internal)?;
            }
            p.metrics.handover_releases.fetch_add(1, Relaxed);
            tracing::warn!(contract = %id, epoch, "customer is back: handed its devices back");
        }
        holding.set_fence(granted.next);
        p.save_holding(&id, &holding).map_err(internal)?;
        let delivered = holding
            .delivered()
            .into_iter()
            .map(|(eui, s)| counter_msg(eui, s, 0))
            .collect();
        let mut m = p.entries.lock().expect("entries");
        let e = m.get_mut(&id).expect("present");
        e.holding = holding;
        e.alive();
        Ok(Response::new(ReleaseReply {
            epoch,
            delivered,
            joins,
            macs,
            receipt_json,
        }))
    }

    async fn amend(&self, req: Request<OfferRequest>) -> Result<Response<OfferReply>, Status> {
        let p = &self.0;
        let renewed: SignedContract = serde_json::from_str(&req.get_ref().signed_contract_json)
            .map_err(|e| Status::invalid_argument(format!("not a signed contract: {e}")))?;
        let id = renewed.contract.id.clone();
        let known = p
            .entries
            .lock()
            .expect("entries")
            .get(&id)
            .map(|e| e.signed.clone())
            .ok_or_else(|| Status::not_found(format!("no accepted contract {id:?}")))?;
        // The caller must be its customer (an expired contract may be
        // renewed too, so not `authorised`).
        let peer = PeerKey::of(&req)?;
        if Some(peer) != known.customer_key() {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            return Err(Status::permission_denied(format!(
                "the caller {} is not the contract's customer",
                peer.to_hex()
            )));
        }
        known
            .contract
            .check_renewal(&renewed.contract)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signed = renewed.accept(&p.identity, now()).map_err(|e| {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            Status::permission_denied(format!("renewal refused: {e}"))
        })?;
        let json = serde_json::to_string_pretty(&signed).map_err(internal)?;
        let path = p.dir.join("contracts").join(format!("{id}.json"));
        crate::fsutil::write_atomic(&path, json.as_bytes(), 0o600).map_err(internal)?;
        if let Some(e) = p.entries.lock().expect("entries").get_mut(&id) {
            e.signed = signed;
        }
        tracing::info!(contract = %id, "handover contract renewed");
        Ok(Response::new(OfferReply {
            signed_contract_json: json,
        }))
    }

    async fn revoke(&self, req: Request<RevokeRequest>) -> Result<Response<RevokeReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        p.authorised(&req, &id)?;
        let r = p.revoke(&id, &req.get_ref().customer_signature).await?;
        Ok(Response::new(RevokeReply {
            provider_signature: r.provider_signature,
        }))
    }

    async fn settle(&self, req: Request<SettleRequest>) -> Result<Response<SettleReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        let signed = p.authorised(&req, &id)?;
        let answered: SignedReceipt = serde_json::from_str(&req.get_ref().receipt_json)
            .map_err(|e| Status::invalid_argument(format!("not a receipt: {e}")))?;
        answered
            .verify(true)
            .map_err(|e| Status::invalid_argument(format!("receipt refused: {e}")))?;
        let r = &answered.receipt;
        if r.contract_id != id || r.customer_key != signed.contract.customer.public_key {
            return Err(Status::permission_denied(
                "the receipt is not of this contract",
            ));
        }
        // Only an answer to the receipt this provider issued.
        let path = p.receipts_dir().join(answered.file_name());
        let ours: SignedReceipt = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Status::not_found(format!("no receipt {}", answered.file_name())))?;
        if ours.receipt != answered.receipt
            || ours.provider_signature != answered.provider_signature
        {
            return Err(Status::failed_precondition(
                "the receipt differs from the one this provider issued",
            ));
        }
        crate::handover::receipt::save(&p.receipts_dir(), &answered).map_err(internal)?;
        match answered.answer.as_ref().map(|a| &a.verdict) {
            Some(Verdict::Accepted) => {
                tracing::info!(contract = %id, epoch = r.epoch, "receipt counter-signed by the customer")
            }
            _ => {
                tracing::warn!(contract = %id, epoch = r.epoch, "the customer disputes the receipt")
            }
        }
        Ok(Response::new(SettleReply {}))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        let c = p.authorised(&req, &id)?;
        let (_, image_complete) = p.store.held(&image_digest(&c)?);
        let m = p.entries.lock().expect("entries");
        let e = &m[&id];
        Ok(Response::new(StatusReply {
            epoch: e.holding.epoch,
            holder: e.holding.holder.as_str().into(),
            image_complete,
            sessions_synced: e.sessions.is_some(),
            silent_ms: e.heard.elapsed().as_millis() as u64,
        }))
    }
}
