//! The operator's commands: `handover offer`, `handover status`,
//! `handover release`, `handover renew`, `handover revoke`,
//! `handover receipts`, `handover receipt verify`. They talk to the provider directly (mutual TLS, as
//! this edge's identity) and keep the customer's contract where the
//! service finds it at start.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::contract::{Activation, Contract, ImageRef, Party, Resources, SignedContract};
use super::customer;
use super::identity::{Identity, PublicKey};
use super::pb::*;
use super::provider::Provider;
use super::transfer::{now, send_image, MAX_CHUNK};
use crate::config::Config;
use crate::image::store::BlobStore;

/// What `handover offer` takes besides the configuration (its CLI options).
#[derive(clap::Args)]
pub struct OfferArgs {
    /// The provider's handover endpoint (`host:port`, its `Handover.Listen`).
    #[arg(long)]
    pub to: String,
    /// The provider's public key (its `identity.pub`): pinned by TLS.
    #[arg(long)]
    pub provider_key: String,
    /// The provider's name in the contract.
    #[arg(long, default_value = "provider")]
    pub provider_id: String,
    /// The contract's id (letters, digits, - and _).
    #[arg(long, default_value = "handover-1")]
    pub id: String,
    /// This edge's name in the contract.
    #[arg(long, default_value = "customer")]
    pub customer_id: String,
    /// DevEUIs handed over, comma-separated (default: every device).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// An image tar made by `package` (default: package this executable now).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// How often this edge tells the provider it is alive (`250ms`, `1s`).
    /// A crash is seen at once (the heartbeat stream closes); a link lost
    /// without a close after `--missed` heartbeats.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// What the provider does with the devices if the contract ends while
    /// it holds them.
    #[arg(long, value_enum, default_value = "hand-back")]
    pub at_expiry: super::contract::AtExpiry,
    /// This provider's rank among this edge's providers of the same
    /// devices (0 first): only the first one reachable takes over.
    #[arg(long, default_value_t = 0)]
    pub rank: u32,
    /// How many heartbeats in a row may be missed before the provider takes over.
    #[arg(long, default_value_t = 4)]
    pub missed: u32,
    /// Memory (MiB) the provider's container running this image may use.
    #[arg(long, default_value_t = 128)]
    pub memory_mib: u64,
    /// CPU (thousandths of a core) the provider's container may use.
    #[arg(long, default_value_t = 500)]
    pub cpu_millis: u32,
    /// How long the contract holds.
    #[arg(long, default_value = "365days", value_parser = humantime::parse_duration)]
    pub valid_for: Duration,
}

pub fn identity(config: &Config) -> anyhow::Result<Identity> {
    let dir = config.service.data_dir.join("identity");
    Identity::load(&dir).map_err(|e| {
        anyhow::anyhow!("{e} (make this edge's identity with `device-lorawan keygen`)")
    })
}

/// The image to offer, in this edge's store: `image`, or a fresh package.
fn image(config: &Config, image: Option<PathBuf>) -> anyhow::Result<(PathBuf, ImageRef)> {
    let store = BlobStore::open(&config.service.data_dir.join("images"))?;
    let tmp;
    let path = match image {
        Some(p) => p,
        None => {
            tmp = tempfile::tempdir()?;
            let out = tmp.path().join("image.tar");
            crate::image::package::package(config, &out)?;
            out
        }
    };
    let (digest, cid, size) = crate::image::store::identify(&path)?;
    store.put_file(&path, &digest)?;
    let stored = store.path(&digest);
    Ok((
        stored,
        ImageRef {
            digest: digest.to_string(),
            cid,
            size,
        },
    ))
}

/// Offer a contract to the provider, send it the image (resumable, with
/// progress on stderr) and keep the signed contract for the service.
pub async fn offer(config: &Config, a: OfferArgs) -> anyhow::Result<SignedContract> {
    let me = identity(config)?;
    let provider_key = PublicKey::from_hex(&a.provider_key)
        .ok_or_else(|| anyhow::anyhow!("--provider-key is not a 64-hex-digit Ed25519 key"))?;
    let devices = if a.devices.is_empty() {
        crate::devices::load(&config.devices.file)?
            .into_iter()
            .map(|d| d.dev_eui.to_string())
            .collect()
    } else {
        a.devices
    };
    let (path, image) = image(config, a.image)?;
    let t0 = now();
    let contract = Contract {
        id: a.id,
        customer: Party {
            id: a.customer_id,
            public_key: me.public().to_hex(),
            address: String::new(),
        },
        provider: Party {
            id: a.provider_id,
            public_key: provider_key.to_hex(),
            address: a.to.clone(),
        },
        image,
        devices,
        activation: Activation {
            heartbeat_ms: a.heartbeat.as_millis() as u64,
            missed_heartbeats: a.missed,
        },
        resources: Resources {
            memory_bytes: a.memory_mib << 20,
            cpu_millis: a.cpu_millis,
        },
        not_before: t0.saturating_sub(60),
        not_after: t0 + a.valid_for.as_secs(),
        at_expiry: a.at_expiry,
        rank: a.rank,
    };
    let offer = SignedContract::offer(contract, &me)?;
    let mut client = super::tls::connect(&a.to, &me, provider_key)?;
    let signed = super::transfer::offer(&mut client, &offer)
        .await
        .map_err(|s| anyhow::anyhow!("the offer: {}", s.message()))?;
    let saved = customer::save_contract(&config.service.data_dir, &signed)?;
    eprintln!("contract {} accepted by {}", signed.contract.id, a.to);
    let reply = send_image(&mut client, &signed, &path, MAX_CHUNK, |held, total| {
        let pct = (held * 100).checked_div(total).unwrap_or(100);
        eprint!("\rimage: {pct:3}% ({held} of {total} bytes)");
        let _ = std::io::stderr().flush();
    })
    .await
    .map_err(|s| anyhow::anyhow!("image transfer: {}", s.message()))?;
    eprintln!();
    println!("contract {}", saved.display());
    println!(
        "image {} ({} bytes) held by the provider",
        reply.digest, reply.size
    );
    println!("devices {}", signed.contract.devices.join(","));
    Ok(signed)
}

/// This edge's contracts on both sides, as text.
pub async fn status(config: &Config) -> anyhow::Result<String> {
    let me = identity(config)?;
    let mut out = String::new();
    for c in customer::contracts(&config.service.data_dir)? {
        let id = &c.contract.id;
        let line = match c.provider_key() {
            Some(key) => {
                let mut client = super::tls::connect(&c.contract.provider.address, &me, key)?;
                match client
                    .status(StatusRequest {
                        contract_id: id.clone(),
                    })
                    .await
                {
                    Ok(r) => {
                        let r = r.into_inner();
                        format!(
                            "epoch {} held by the {}; image {}; sessions {}; last heartbeat {} ms ago",
                            r.epoch,
                            r.holder,
                            if r.image_complete { "complete" } else { "incomplete" },
                            if r.sessions_synced { "synced" } else { "not synced" },
                            r.silent_ms
                        )
                    }
                    Err(s) => format!("provider unreachable: {}", s.message()),
                }
            }
            None => "malformed provider key".into(),
        };
        let bought = crate::market::state::State::load(&config.service.data_dir)
            .filter(|m| m.contract_id == *id)
            .map(|m| format!(" (bought on the market, demand {})", m.demand_id))
            .unwrap_or_default();
        out.push_str(&format!(
            "customer {id} -> {} ({}){bought}: {} devices; {line}\n",
            c.contract.provider.id,
            c.contract.provider.address,
            c.contract.devices.len()
        ));
    }
    let pdir = config.service.data_dir.join("handover/provider");
    if pdir.exists() {
        let p = Provider::open(me, &pdir, None, Default::default())?;
        for s in p.status() {
            out.push_str(&format!(
                "provider {} for {}: epoch {} held by the {}; {} devices; sessions {}; image {} ({} of it)\n",
                s.id,
                s.customer,
                s.epoch,
                s.holder.as_str(),
                s.devices,
                if s.sessions_synced { "synced" } else { "not synced" },
                s.image,
                if s.image_complete { "all".to_string() } else { format!("{} bytes", s.image_bytes_held) },
            ));
        }
    }
    if out.is_empty() {
        out.push_str("no handover contracts\n");
    }
    Ok(out)
}

/// The customer contract `id` this edge holds.
fn customer_contract(config: &Config, id: &str) -> anyhow::Result<SignedContract> {
    customer::contracts(&config.service.data_dir)?
        .into_iter()
        .find(|c| c.contract.id == id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no customer contract {id:?} in {}",
                config.service.data_dir.join(customer::DIR).display()
            )
        })
}

/// Renew contract `id` for `valid_for` from now: the same agreement with a
/// later end, signed by this edge and counter-signed by the provider. A
/// running service goes on with the new terms without a restart.
pub async fn renew(config: &Config, id: &str, valid_for: Duration) -> anyhow::Result<String> {
    let me = identity(config)?;
    let known = customer_contract(config, id)?;
    let mut terms = known.contract.clone();
    terms.not_after = now() + valid_for.as_secs();
    let offer = SignedContract::offer(terms, &me)?;
    let key = known
        .provider_key()
        .ok_or_else(|| anyhow::anyhow!("contract {id}: malformed provider key"))?;
    let mut client = super::tls::connect(&known.contract.provider.address, &me, key)?;
    let reply = client
        .amend(OfferRequest {
            signed_contract_json: serde_json::to_string(&offer)?,
        })
        .await
        .map_err(|s| anyhow::anyhow!("renewal refused: {}", s.message()))?
        .into_inner();
    let signed: SignedContract = serde_json::from_str(&reply.signed_contract_json)?;
    signed.verify(now())?;
    if signed.contract != offer.contract {
        anyhow::bail!("the provider signed other terms than this edge offered");
    }
    customer::save_contract(&config.service.data_dir, &signed)?;
    Ok(format!(
        "renewed {id} until {} (Unix seconds), signed by both\n",
        signed.contract.not_after
    ))
}

/// Revoke contract `id`: both sign its end; the provider stands down (its
/// receipt is settled as at a hand-back) and forgets it; this edge keeps
/// the signed revocation and publishes the devices as its own.
pub async fn revoke(config: &Config, id: &str) -> anyhow::Result<String> {
    let me = identity(config)?;
    let known = customer_contract(config, id)?;
    let key = known
        .provider_key()
        .ok_or_else(|| anyhow::anyhow!("contract {id}: malformed provider key"))?;
    let bytes = known.contract.revocation_bytes();
    let customer_signature = hex::encode(me.sign(&bytes));
    let mut client = super::tls::connect(&known.contract.provider.address, &me, key)?;
    let reply = client
        .revoke(RevokeRequest {
            contract_id: id.to_owned(),
            customer_signature: customer_signature.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("revocation refused: {}", s.message()))?
        .into_inner();
    let revocation = super::contract::Revocation {
        contract: known.contract.clone(),
        at: now(),
        customer_signature,
        provider_signature: reply.provider_signature,
    };
    revocation.verify()?;
    let dir = config.service.data_dir.join(customer::DIR).join("revoked");
    std::fs::create_dir_all(&dir)?;
    let kept = dir.join(format!("{id}.json"));
    crate::fsutil::write_atomic(&kept, &serde_json::to_vec_pretty(&revocation)?, 0o644)?;
    let contract = config
        .service
        .data_dir
        .join(customer::DIR)
        .join(format!("{id}.json"));
    std::fs::remove_file(&contract).map_err(|e| anyhow::anyhow!("{}: {e}", contract.display()))?;
    let _ = std::fs::remove_file(contract.with_extension("state.json"));
    Ok(format!(
        "revoked {id}, signed by both: {}\n",
        kept.display()
    ))
}

/// Every receipt this edge keeps, one line each.
pub fn receipts(config: &Config) -> anyhow::Result<String> {
    let kept = super::receipt::kept(&config.service.data_dir)?;
    if kept.is_empty() {
        return Ok("no receipts\n".into());
    }
    Ok(kept
        .iter()
        .map(|(role, r)| format!("{role:?} {}\n", r.summary()).to_lowercase_first())
        .collect())
}

/// Check a receipt file offline: the provider's signature, every device's
/// chain, and the customer's answer if it has one.
pub fn verify_receipt(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let r: super::receipt::SignedReceipt = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a receipt: {e}", path.display()))?;
    r.verify(false)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let who = if r.answer.is_some() {
        "provider's and customer's signatures hold"
    } else {
        "provider's signature holds (not answered by the customer)"
    };
    Ok(format!(
        "{}: {who}; chains match\n{}\n",
        path.display(),
        r.summary()
    ))
}

trait LowerFirst {
    fn to_lowercase_first(self) -> String;
}

impl LowerFirst for String {
    fn to_lowercase_first(self) -> String {
        let mut c = self.chars();
        match c.next() {
            Some(f) => f.to_lowercase().chain(c).collect(),
            None => self,
        }
    }
}

/// Take the devices back from the provider now, under a higher epoch.
/// (A running customer service does this by itself when it starts.)
pub async fn release(config: &Config, id: Option<&str>) -> anyhow::Result<String> {
    let me = identity(config)?;
    let mut out = String::new();
    for c in customer::contracts(&config.service.data_dir)? {
        if id.is_some_and(|id| id != c.contract.id) {
            continue;
        }
        let key = c
            .provider_key()
            .ok_or_else(|| anyhow::anyhow!("contract {}: malformed provider key", c.contract.id))?;
        let mut client = super::tls::connect(&c.contract.provider.address, &me, key)?;
        let cid = c.contract.id.clone();
        let st = client
            .status(StatusRequest {
                contract_id: cid.clone(),
            })
            .await?
            .into_inner();
        let r = client
            .release(ReleaseRequest {
                contract_id: cid.clone(),
                epoch: st.epoch + 1,
            })
            .await
            .map_err(|s| anyhow::anyhow!("release refused: {}", s.message()))?
            .into_inner();
        let counters: Vec<String> = r
            .delivered
            .iter()
            .map(|c| {
                let (eui, s) = super::takeover::counter_of(c);
                format!("{eui}={}", s.last.map_or("-".into(), |f| f.to_string()))
            })
            .collect();
        out.push_str(&format!(
            "released {cid} at epoch {}; delivered: {}\n",
            r.epoch,
            counters.join(" ")
        ));
        if !r.receipt_json.is_empty() {
            // No frames heard by this edge to check it against: the
            // signatures and chains are, and EdgeX's records; it is kept
            // and answered.
            let records = super::records::EdgexRecords::of(config);
            let known = super::settle::Known {
                heard: &[],
                left_ms: None,
                records: records.as_ref(),
            };
            let answered = super::settle::settle(
                &mut client,
                &me,
                &c,
                &config.service.data_dir,
                &r.receipt_json,
                known,
            )
            .await?;
            out.push_str(&format!("receipt {}\n", answered.summary()));
        }
    }
    if out.is_empty() {
        anyhow::bail!("no customer contract to release");
    }
    Ok(out)
}
