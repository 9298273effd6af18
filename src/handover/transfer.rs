//! The offer and the image transfer, both sides of `proto/handover.proto`.
//!
//! Provider: an offer is accepted only if the customer's signature holds
//! and the contract names this edge as provider; the accepted contract is
//! kept on disk. The image streams into the blob store in chunks of at most
//! 1 MiB, hashed as it arrives: memory does not grow with the image. It
//! must be the contract's image (digest and size). A short or broken stream
//! leaves a partial file to resume from. A digest mismatch discards it.
//!
//! Customer: offer, ask where to resume, stream the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status, Streaming};

use super::contract::SignedContract;
use super::identity::Identity;
use super::pb::handover_client::HandoverClient;
use super::pb::handover_server::Handover;
use super::pb::*;
use crate::image::store::{BlobStore, Digest, StoreError};

/// Largest chunk a transfer may carry.
pub const MAX_CHUNK: usize = 1 << 20;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The provider's side: its identity, accepted contracts and image store.
pub struct Provider {
    identity: Identity,
    dir: PathBuf,
    store: BlobStore,
    contracts: Mutex<HashMap<String, SignedContract>>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl Provider {
    /// Open the provider state in `dir` (contracts in `contracts/`, images
    /// in `images/`): accepted contracts survive a restart.
    pub fn open(identity: Identity, dir: &Path) -> anyhow::Result<Self> {
        let cdir = dir.join("contracts");
        std::fs::create_dir_all(&cdir)?;
        let mut contracts = HashMap::new();
        for e in std::fs::read_dir(&cdir)? {
            let path = e?.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let c: SignedContract = serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            contracts.insert(c.contract.id.clone(), c);
        }
        Ok(Self {
            identity,
            store: BlobStore::open(&dir.join("images"))?,
            dir: dir.to_owned(),
            contracts: Mutex::new(contracts),
        })
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// An accepted contract still in force.
    fn contract(&self, id: &str) -> Result<SignedContract, Status> {
        let c = self
            .contracts
            .lock()
            .expect("contracts lock")
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no accepted contract {id:?}")))?;
        c.verify(now())
            .map_err(|e| Status::permission_denied(format!("contract {id}: {e}")))?;
        Ok(c)
    }

    fn image_digest(c: &SignedContract) -> Result<Digest, Status> {
        Digest::parse(&c.contract.image.digest).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

#[tonic::async_trait]
impl Handover for Provider {
    async fn offer(&self, req: Request<OfferRequest>) -> Result<Response<OfferReply>, Status> {
        let offer: SignedContract = serde_json::from_str(&req.get_ref().signed_contract_json)
            .map_err(|e| Status::invalid_argument(format!("not a signed contract: {e}")))?;
        // A contract id names one agreement: the same offer again is
        // answered as before; a different one under that id is refused.
        let known = self
            .contracts
            .lock()
            .expect("contracts lock")
            .get(&offer.contract.id)
            .cloned();
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
        let signed = offer
            .accept(&self.identity, now())
            .map_err(|e| Status::permission_denied(format!("offer refused: {e}")))?;
        let json = serde_json::to_string_pretty(&signed).map_err(internal)?;
        let id = &signed.contract.id;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Status::invalid_argument(
                "contract ids are letters, digits, - and _",
            ));
        }
        let path = self.dir.join("contracts").join(format!("{id}.json"));
        crate::fsutil::write_atomic(&path, json.as_bytes(), 0o600).map_err(internal)?;
        tracing::info!(contract = %id, customer = %signed.contract.customer.id, devices = signed.contract.devices.len(), "handover contract accepted");
        self.contracts
            .lock()
            .expect("contracts lock")
            .insert(id.clone(), signed);
        Ok(Response::new(OfferReply {
            signed_contract_json: json,
        }))
    }

    async fn image_offset(
        &self,
        req: Request<ImageOffsetRequest>,
    ) -> Result<Response<ImageOffsetReply>, Status> {
        let c = self.contract(&req.get_ref().contract_id)?;
        let (offset, complete) = self.store.held(&Self::image_digest(&c)?);
        Ok(Response::new(ImageOffsetReply { offset, complete }))
    }

    async fn transfer_image(
        &self,
        req: Request<Streaming<ImageChunk>>,
    ) -> Result<Response<TransferReply>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty transfer"))?;
        let c = self.contract(&first.contract_id)?;
        let d = Self::image_digest(&c)?;
        let size = c.contract.image.size;
        if first.digest != d.as_str() || first.total_size != size {
            return Err(Status::invalid_argument(format!(
                "the contract's image is {d} of {size} bytes, not {} of {}",
                first.digest, first.total_size
            )));
        }
        if self.store.contains(&d) {
            return Ok(Response::new(TransferReply {
                digest: d.to_string(),
                size,
            }));
        }
        let mut incoming = self.store.incoming(&d).map_err(internal)?;
        if first.offset != incoming.len() {
            return Err(Status::failed_precondition(format!(
                "resume from offset {}, not {}",
                incoming.len(),
                first.offset
            )));
        }
        let mut chunk = Some(first.data);
        loop {
            let data = match chunk.take() {
                Some(d) => d,
                None => match stream.message().await {
                    Ok(Some(m)) => m.data,
                    Ok(None) => break,
                    // The customer went away: keep what arrived, to resume.
                    Err(e) => {
                        return Err(Status::aborted(format!(
                            "transfer interrupted at {}: {e}",
                            incoming.len()
                        )))
                    }
                },
            };
            if data.len() > MAX_CHUNK {
                return Err(Status::invalid_argument(format!(
                    "a chunk of {} bytes is over the 1 MiB limit",
                    data.len()
                )));
            }
            if incoming.len() + data.len() as u64 > size {
                self.store.discard_partial(&d);
                return Err(Status::invalid_argument(format!(
                    "more than the image's {size} bytes"
                )));
            }
            incoming.write(&data).map_err(internal)?;
        }
        if incoming.len() != size {
            return Err(Status::failed_precondition(format!(
                "incomplete: {} of {size} bytes; resume from there",
                incoming.len()
            )));
        }
        match incoming.commit() {
            Ok(d) => {
                tracing::info!(contract = %c.contract.id, digest = %d, size, "image received");
                Ok(Response::new(TransferReply {
                    digest: d.to_string(),
                    size,
                }))
            }
            Err(StoreError::Mismatch { expected, actual }) => Err(Status::data_loss(format!(
                "the image received hashes to {actual}, not {expected}: discarded"
            ))),
            Err(e) => Err(internal(e)),
        }
    }
}

/// The customer's side of a transfer: send `image` from wherever the
/// provider has it up to, in `chunk`-byte messages. `progress` sees bytes
/// held by the provider so far.
pub async fn send_image<T>(
    client: &mut HandoverClient<T>,
    contract: &SignedContract,
    image: &Path,
    chunk: usize,
    progress: impl Fn(u64, u64) + Send + 'static,
) -> Result<TransferReply, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::transport::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::transport::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let id = contract.contract.id.clone();
    let at = client
        .image_offset(ImageOffsetRequest {
            contract_id: id.clone(),
        })
        .await?
        .into_inner();
    let size = contract.contract.image.size;
    if at.complete {
        progress(size, size);
        return Ok(TransferReply {
            digest: contract.contract.image.digest.clone(),
            size,
        });
    }
    let mut file = tokio::fs::File::open(image)
        .await
        .map_err(|e| Status::failed_precondition(format!("{}: {e}", image.display())))?;
    use tokio::io::AsyncSeekExt;
    file.seek(std::io::SeekFrom::Start(at.offset))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let chunk = chunk.clamp(1, MAX_CHUNK);
    let digest = contract.contract.image.digest.clone();
    // One chunk read ahead at a time: memory stays at a couple of chunks.
    let (tx, rx) = tokio::sync::mpsc::channel::<ImageChunk>(2);
    let offset = at.offset;
    tokio::spawn(async move {
        let mut sent = offset;
        let mut first = true;
        loop {
            let mut buf = vec![0u8; chunk];
            let n = match file.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            let msg = if first {
                first = false;
                ImageChunk {
                    contract_id: id.clone(),
                    digest: digest.clone(),
                    total_size: size,
                    offset,
                    data: buf,
                }
            } else {
                ImageChunk {
                    data: buf,
                    ..Default::default()
                }
            };
            if tx.send(msg).await.is_err() {
                break;
            }
            sent += n as u64;
            progress(sent, size);
        }
    });
    let reply = client
        .transfer_image(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?;
    Ok(reply.into_inner())
}
