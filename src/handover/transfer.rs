//! The image transfer, both sides.
//!
//! Provider: the image streams into the blob store in chunks of at most
//! 1 MiB, hashed as it arrives: memory does not grow with the image. It
//! must be the contract's image (digest and size). A short or broken stream
//! leaves a partial file to resume from. A digest mismatch discards it.
//!
//! Customer: ask where to resume, stream the rest.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tonic::{Status, Streaming};

use super::contract::SignedContract;
use super::pb::handover_client::HandoverClient;
use super::pb::*;
use crate::image::store::{BlobStore, Digest, StoreError};

/// Largest chunk a transfer may carry.
pub const MAX_CHUNK: usize = 1 << 20;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The provider's side of a transfer: the stream of `contract`'s image
/// into `store`, whose first message was `first`.
pub async fn receive(
    store: &BlobStore,
    c: &SignedContract,
    first: ImageChunk,
    mut stream: Streaming<ImageChunk>,
) -> Result<TransferReply, Status> {
    let d = image_digest(c)?;
    let size = c.contract.image.size;
    if first.digest != d.as_str() || first.total_size != size {
        return Err(Status::invalid_argument(format!(
            "the contract's image is {d} of {size} bytes, not {} of {}",
            first.digest, first.total_size
        )));
    }
    if store.contains(&d) {
        return Ok(TransferReply {
            digest: d.to_string(),
            size,
        });
    }
    let mut incoming = store.incoming(&d).map_err(internal)?;
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
            store.discard_partial(&d);
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
            Ok(TransferReply {
                digest: d.to_string(),
                size,
            })
        }
        Err(StoreError::Mismatch { expected, actual }) => Err(Status::data_loss(format!(
            "the image received hashes to {actual}, not {expected}: discarded"
        ))),
        Err(e) => Err(internal(e)),
    }
}

pub fn image_digest(c: &SignedContract) -> Result<Digest, Status> {
    Digest::parse(&c.contract.image.digest).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// The customer's side of an offer: send `offer`, and take back the
/// provider's counter-signed contract only if both signatures hold and the
/// terms are the ones offered.
pub async fn offer<T>(
    client: &mut HandoverClient<T>,
    offer: &SignedContract,
) -> Result<SignedContract, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::transport::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::transport::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let json = serde_json::to_string(offer).map_err(|e| Status::internal(e.to_string()))?;
    let reply = client
        .offer(OfferRequest {
            signed_contract_json: json,
        })
        .await?
        .into_inner();
    let signed: SignedContract = serde_json::from_str(&reply.signed_contract_json)
        .map_err(|e| Status::internal(format!("the provider's answer: {e}")))?;
    signed
        .verify(now())
        .map_err(|e| Status::permission_denied(format!("the provider's answer: {e}")))?;
    if signed.contract != offer.contract {
        return Err(Status::permission_denied(
            "the provider signed other terms than offered",
        ));
    }
    Ok(signed)
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
