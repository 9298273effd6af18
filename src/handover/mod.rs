//! Edge-as-a-Service handover: a customer edge hands its devices and its
//! packaged service to a provider edge under a signed contract.
//! [`identity`]: an edge's Ed25519 key pair; [`contract`]: what both edges
//! sign; [`transfer`]: the offer and the image, over [`pb`] (gRPC).

pub mod contract;
pub mod customer;
pub mod delivered;
pub mod identity;
pub mod operator;
pub mod pb;
pub mod provider;
pub mod takeover;
pub mod tls;
pub mod transfer;
