//! The service as a container image, for handing it over to another edge:
//! [`package`] gathers what it needs to run ([`elf`] finds its libraries),
//! [`oci`] writes a reproducible OCI/docker-save tar, [`cid`] names it the
//! IPFS way, and [`store`] keeps images by content digest.

pub mod cid;
pub mod elf;
pub mod oci;
pub mod package;
pub mod store;
