//! The handover protocol between two edges on loopback: the signed offer,
//! and the image transfer (chunked, resumable, digest-checked), with every
//! refusal the issue lists that these calls can meet.

use std::sync::Arc;

use device_lorawan::handover::contract::{
    Activation, Contract, ImageRef, Party, Resources, SignedContract,
};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::pb::handover_client::HandoverClient;
use device_lorawan::handover::pb::handover_server::HandoverServer;
use device_lorawan::handover::pb::{ImageChunk, ImageOffsetRequest, OfferRequest};
use device_lorawan::handover::transfer::{now, send_image, Provider};
use device_lorawan::image::store::Digest;
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
}

async fn serve(identity: Identity, dir: &std::path::Path) -> std::net::SocketAddr {
    let provider = Provider::open(identity, dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HandoverServer::new(provider))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

async fn edges(image_size: usize) -> Edges {
    let dir = tempfile::tempdir().unwrap();
    let provider = Identity::generate().unwrap();
    let provider_pub = provider.public().to_hex();
    let addr = serve(provider, &dir.path().join("provider")).await;
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
            activation: Activation::default(),
            resources: Resources {
                memory_bytes: 64 << 20,
                cpu_millis: 500,
            },
            not_before: self.t0,
            not_after: self.t0 + 3600,
        }
    }

    async fn client(&self) -> HandoverClient<Channel> {
        HandoverClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn offer(&self, c: &mut HandoverClient<Channel>) -> SignedContract {
        let offer = SignedContract::offer(self.contract(), &self.customer).unwrap();
        let reply = c
            .offer(OfferRequest {
                signed_contract_json: serde_json::to_string(&offer).unwrap(),
            })
            .await
            .unwrap()
            .into_inner();
        let signed: SignedContract = serde_json::from_str(&reply.signed_contract_json).unwrap();
        signed.verify(now()).expect("both signatures");
        signed
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
        let err = c
            .offer(OfferRequest {
                signed_contract_json: serde_json::to_string(&bad).unwrap(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    }
    let err = c
        .offer(OfferRequest {
            signed_contract_json: "{}".into(),
        })
        .await
        .unwrap_err();
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
    let err = c
        .transfer_image(tokio_stream::iter([chunk(&e.digest, bytes.clone())]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    e.offer(&mut c).await;
    // The same offer again is answered the same; other terms under its id are refused.
    e.offer(&mut c).await;
    let mut rival = e.contract();
    rival.devices = vec!["70b3d57ed0000042".into()];
    let rival = SignedContract::offer(rival, &e.customer).unwrap();
    let err = c
        .offer(OfferRequest {
            signed_contract_json: serde_json::to_string(&rival).unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    // Another image than the contract's.
    let wrong = Digest::of(b"another image").to_string();
    let err = c
        .transfer_image(tokio_stream::iter([chunk(&wrong, bytes.clone())]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // A chunk over 1 MiB.
    let mut big = chunk(&e.digest, vec![0; (1 << 20) + 1]);
    big.total_size = e.size;
    let err = c
        .transfer_image(tokio_stream::iter([big]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // A tampered chunk: refused at the end, nothing stored, nothing to resume.
    let mut tampered = bytes.clone();
    tampered[1234] ^= 0x01;
    let err = c
        .transfer_image(tokio_stream::iter([chunk(&e.digest, tampered)]))
        .await
        .unwrap_err();
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
