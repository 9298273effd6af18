//! The handover contract: which edge (the customer) hands which devices to
//! which other edge (the provider), running which image, under what
//! activation condition and resource limits, for how long. Both edges sign
//! its canonical bytes with their identity keys; a contract that is
//! unsigned, altered, not yet valid or expired is refused.
//!
//! Canonical bytes: a domain-separation tag, then the contract as compact
//! JSON with fields in declaration order (serde's struct order, stable by
//! construction) and lists as given. Nothing the signatures cover is
//! reordered after signing.

use serde::{Deserialize, Serialize};

use super::identity::{verify, Identity, PublicKey};

const DOMAIN: &[u8] = b"device-lorawan handover contract v1\n";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Party {
    /// A name for logs and status; the key is the identity.
    pub id: String,
    /// Ed25519 public key, 64 hex digits: pinned by TLS, checked on signatures.
    pub public_key: String,
    /// Where its handover endpoint listens (`host:port`).
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRef {
    /// `sha256:<hex>` of the image tar.
    pub digest: String,
    /// Its IPFS CIDv1, for a copy kept in IPFS or Filecoin.
    pub cid: String,
    pub size: u64,
}

/// When the provider takes over: at once when the customer's heartbeat
/// stream closes (its process died, or it said it is stopping), else when
/// it has been silent for `missed_heartbeats` heartbeats of `heartbeat_ms`
/// (a link or host lost without a close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Activation {
    pub heartbeat_ms: u64,
    pub missed_heartbeats: u32,
}

impl Default for Activation {
    fn default() -> Self {
        Self {
            heartbeat_ms: 250,
            missed_heartbeats: 4,
        }
    }
}

/// What the provider grants, and enforces on a container it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub memory_bytes: u64,
    /// CPU in thousandths of a core.
    pub cpu_millis: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contract {
    pub id: String,
    pub customer: Party,
    pub provider: Party,
    pub image: ImageRef,
    /// DevEUIs handed over (hex).
    pub devices: Vec<String>,
    pub activation: Activation,
    pub resources: Resources,
    /// Valid from / until, seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
    /// What the provider does when the contract ends while it holds the
    /// devices. (Left out of the signed bytes when it is the default, so
    /// contracts signed before it existed still verify.)
    #[serde(default, skip_serializing_if = "AtExpiry::is_default")]
    pub at_expiry: AtExpiry,
    /// Where this provider stands among the customer's providers of the
    /// same devices: 0 first. The customer tells each provider in its
    /// heartbeats whether one ranked above it is reachable; only the first
    /// reachable one takes over. (Left out of the signed bytes when 0.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rank: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a provider does with devices it holds when the contract ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AtExpiry {
    /// Stop publishing them and keep their sessions until the customer
    /// asks for them back (its release is then refused as expired, and it
    /// publishes on its own after the activation window).
    #[default]
    HandBack,
    /// Stop publishing them and delete their sessions (keys) at once.
    Release,
}

impl AtExpiry {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A contract with the parties' signatures (hex), as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedContract {
    pub contract: Contract,
    pub customer_signature: Option<String>,
    pub provider_signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("the contract is not signed by the {0}")]
    Unsigned(&'static str),
    #[error(
        "the {0}'s signature does not verify: the contract was altered or signed by another key"
    )]
    BadSignature(&'static str),
    #[error("the {0}'s public key is not a 32-byte hex Ed25519 key")]
    BadKey(&'static str),
    #[error("the contract is not valid before {0} (now {1})")]
    NotYetValid(u64, u64),
    #[error("the contract expired at {0} (now {1})")]
    Expired(u64, u64),
    #[error("this edge is not the contract's {0}")]
    NotAParty(&'static str),
    #[error("the contract is incomplete: {0}")]
    Invalid(&'static str),
}

impl Contract {
    /// The bytes both parties sign.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut b = DOMAIN.to_vec();
        b.extend_from_slice(&serde_json::to_vec(self).expect("contract serialises"));
        b
    }

    fn check_shape(&self) -> Result<(), ContractError> {
        if self.devices.is_empty() {
            return Err(ContractError::Invalid("no devices"));
        }
        if self.activation.heartbeat_ms == 0 || self.activation.missed_heartbeats == 0 {
            return Err(ContractError::Invalid("the activation condition is zero"));
        }
        if self.not_after <= self.not_before {
            return Err(ContractError::Invalid("it ends before it starts"));
        }
        Ok(())
    }
}

/// What both parties sign to end a contract early.
const REVOCATION: &[u8] = b"device-lorawan handover revocation v1\n";

/// A contract ended early, signed by both parties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revocation {
    pub contract: Contract,
    /// Unix seconds.
    pub at: u64,
    pub customer_signature: String,
    pub provider_signature: String,
}

impl Contract {
    /// The bytes of this contract's revocation.
    pub fn revocation_bytes(&self) -> Vec<u8> {
        let mut b = REVOCATION.to_vec();
        b.extend_from_slice(&self.canonical_bytes());
        b
    }

    /// `renewed` may replace this contract: the same agreement (id,
    /// parties, image, devices), other validity, activation, resources or
    /// end only.
    pub fn check_renewal(&self, renewed: &Contract) -> Result<(), ContractError> {
        let same = self.id == renewed.id
            && self.customer == renewed.customer
            && self.provider == renewed.provider
            && self.image == renewed.image
            && self.devices == renewed.devices;
        if !same {
            return Err(ContractError::Invalid(
                "a renewal changes only validity, activation, resources and end",
            ));
        }
        Ok(())
    }
}

impl Revocation {
    /// Both signatures hold.
    pub fn verify(&self) -> Result<(), ContractError> {
        let bytes = self.contract.revocation_bytes();
        for (party, key, sig) in [
            (
                "customer",
                &self.contract.customer.public_key,
                &self.customer_signature,
            ),
            (
                "provider",
                &self.contract.provider.public_key,
                &self.provider_signature,
            ),
        ] {
            let key = PublicKey::from_hex(key).ok_or(ContractError::BadKey(party))?;
            let sig = hex::decode(sig).map_err(|_| ContractError::BadSignature(party))?;
            if !verify(&key, &bytes, &sig) {
                return Err(ContractError::BadSignature(party));
            }
        }
        Ok(())
    }
}

impl SignedContract {
    /// The customer's offer: signed by the customer only.
    pub fn offer(contract: Contract, customer: &Identity) -> Result<Self, ContractError> {
        if PublicKey::from_hex(&contract.customer.public_key) != Some(customer.public()) {
            return Err(ContractError::NotAParty("customer"));
        }
        contract.check_shape()?;
        let sig = customer.sign(&contract.canonical_bytes());
        Ok(Self {
            contract,
            customer_signature: Some(hex::encode(sig)),
            provider_signature: None,
        })
    }

    /// The provider accepts an offer whose customer signature holds.
    pub fn accept(mut self, provider: &Identity, now: u64) -> Result<Self, ContractError> {
        if PublicKey::from_hex(&self.contract.provider.public_key) != Some(provider.public()) {
            return Err(ContractError::NotAParty("provider"));
        }
        self.verify_party("customer", now)?;
        let sig = provider.sign(&self.contract.canonical_bytes());
        self.provider_signature = Some(hex::encode(sig));
        Ok(self)
    }

    fn verify_party(&self, party: &'static str, now: u64) -> Result<(), ContractError> {
        let c = &self.contract;
        c.check_shape()?;
        let (key, sig) = match party {
            "customer" => (&c.customer.public_key, &self.customer_signature),
            _ => (&c.provider.public_key, &self.provider_signature),
        };
        let key = PublicKey::from_hex(key).ok_or(ContractError::BadKey(party))?;
        let sig = sig.as_deref().ok_or(ContractError::Unsigned(party))?;
        let sig = hex::decode(sig).map_err(|_| ContractError::BadSignature(party))?;
        if !verify(&key, &c.canonical_bytes(), &sig) {
            return Err(ContractError::BadSignature(party));
        }
        if now < c.not_before {
            return Err(ContractError::NotYetValid(c.not_before, now));
        }
        if now >= c.not_after {
            return Err(ContractError::Expired(c.not_after, now));
        }
        Ok(())
    }

    /// In force: both signatures hold and `now` is inside its validity.
    pub fn verify(&self, now: u64) -> Result<(), ContractError> {
        self.verify_party("customer", now)?;
        self.verify_party("provider", now)
    }

    /// The DevEUIs handed over (entries that do not parse name no device).
    pub fn dev_euis(&self) -> Vec<crate::lorawan::Eui64> {
        self.contract
            .devices
            .iter()
            .filter_map(|d| crate::lorawan::Eui64::from_hex(d).ok())
            .collect()
    }

    pub fn customer_key(&self) -> Option<PublicKey> {
        PublicKey::from_hex(&self.contract.customer.public_key)
    }

    pub fn provider_key(&self) -> Option<PublicKey> {
        PublicKey::from_hex(&self.contract.provider.public_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(customer: &Identity, provider: &Identity) -> Contract {
        Contract {
            id: "c-1".into(),
            customer: Party {
                id: "edge-a".into(),
                public_key: customer.public().to_hex(),
                address: "127.0.0.1:59990".into(),
            },
            provider: Party {
                id: "edge-b".into(),
                public_key: provider.public().to_hex(),
                address: "127.0.0.1:59991".into(),
            },
            image: ImageRef {
                digest: format!("sha256:{}", "a".repeat(64)),
                cid: "bafybei".into(),
                size: 1,
            },
            devices: vec!["70b3d57ed0000001".into()],
            activation: Activation::default(),
            resources: Resources {
                memory_bytes: 64 << 20,
                cpu_millis: 500,
            },
            not_before: 100,
            not_after: 200,
            at_expiry: Default::default(),
            rank: 0,
        }
    }

    #[test]
    fn both_signatures_and_the_validity_window_are_required() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let offer = SignedContract::offer(contract(&a, &b), &a).unwrap();
        assert_eq!(offer.verify(150), Err(ContractError::Unsigned("provider")));
        assert_eq!(
            SignedContract::offer(contract(&a, &b), &b).unwrap_err(),
            ContractError::NotAParty("customer")
        );
        assert_eq!(
            offer.clone().accept(&a, 150).unwrap_err(),
            ContractError::NotAParty("provider")
        );
        let signed = offer.accept(&b, 150).unwrap();
        assert_eq!(signed.verify(150), Ok(()));
        assert_eq!(signed.verify(99), Err(ContractError::NotYetValid(100, 99)));
        assert_eq!(signed.verify(200), Err(ContractError::Expired(200, 200)));

        // Altered after signing: more devices, a longer term, another image.
        let mut more = signed.clone();
        more.contract.devices.push("70b3d57ed0000002".into());
        assert_eq!(
            more.verify(150),
            Err(ContractError::BadSignature("customer"))
        );
        let mut longer = signed.clone();
        longer.contract.not_after = 10_000;
        assert_eq!(
            longer.verify(150),
            Err(ContractError::BadSignature("customer"))
        );
        // A provider signature from a key not in the contract.
        let mut forged = signed.clone();
        let mallory = Identity::generate().unwrap();
        forged.provider_signature = Some(hex::encode(
            mallory.sign(&signed.contract.canonical_bytes()),
        ));
        assert_eq!(
            forged.verify(150),
            Err(ContractError::BadSignature("provider"))
        );

        // It survives JSON storage unchanged, and still verifies.
        let text = serde_json::to_string_pretty(&signed).unwrap();
        let back: SignedContract = serde_json::from_str(&text).unwrap();
        assert_eq!(back.verify(150), Ok(()));
        assert!(serde_json::from_str::<SignedContract>(
            &text.replace("\"id\": \"c-1\"", "\"id\": \"c-1\", \"extra\": 1")
        )
        .is_err());
    }
}
