//! Keys and credentials from the EdgeX secret store (secure mode).
//!
//! The MQTT clients' usernames and passwords, when their `SecretName` says
//! so, are read once at start ([`broker_credentials`]). A device whose keys are
//! not here yet — one from EdgeX or discovery waiting for its secret, or a
//! devices-file device with no session — is served as soon as the store
//! holds its secret, whoever put it there (`POST /api/v3/secret` on this
//! service or another instance, `secrets-config`, an operator): the store is
//! asked when a device starts waiting and every `SecretStore.KeyPoll`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::control::plane::Plane;
use crate::edgex::provisioning::Provisioning;
use crate::edgex::secret_store::{SecretStoreClient, StoreError};
use crate::store::secrets::session_from_secret_data;

/// Ask `store` for the keys devices wait for, until the service stops.
/// `missing`: the devices-file devices that had no session at start.
pub async fn fetch(
    store: Arc<SecretStoreClient>,
    api: Arc<Plane>,
    provisioning: Arc<Provisioning>,
    mut missing: BTreeSet<String>,
    poll: Duration,
) {
    // One complaint per outage, not one per device and round.
    let mut failing = false;
    loop {
        let mut errors = Vec::new();
        missing.retain(|name| !api.secrets.lock().expect("secrets lock").has_session(name));
        for name in missing.clone() {
            match store.get(&name).await {
                Ok(Some(data)) => {
                    if file_device_keys(&api, &name, &data) {
                        missing.remove(&name);
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        for secret in provisioning.waiting_secrets() {
            match store.get(&secret).await {
                Ok(Some(data)) => {
                    let _ = api
                        .secrets
                        .lock()
                        .expect("secrets lock")
                        .put_other(&secret, &data);
                    if provisioning.secret_arrived(&secret, &data) {
                        tracing::info!(secret = %secret, "keys read from the EdgeX secret store");
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        api.metrics
            .secret_store_errors
            .fetch_add(errors.len() as u64, Relaxed);
        match errors.first() {
            Some(e) if !failing => {
                failing = true;
                log_failure(e);
            }
            None if failing => {
                failing = false;
                tracing::info!("the EdgeX secret store answers again");
            }
            _ => {}
        }
        tokio::select! {
            _ = provisioning.keys_wanted.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// `config` with the MQTT credentials its `SecretName`s point at read from
/// the secret store. The store may still be starting (as in EdgeX's own
/// bootstrap): a failure to reach it is retried for a while; a secret that
/// is not there is an error at once.
pub async fn broker_credentials(config: Arc<Config>) -> anyhow::Result<Arc<Config>> {
    let ingest = config.ingest.mqtt.enabled && !config.ingest.mqtt.secret_name.is_empty();
    let bus = !config.edgex.message_bus.secret_name.is_empty();
    if !config.secret_store.enabled || !(ingest || bus) {
        return Ok(config);
    }
    let store = SecretStoreClient::new(&config.secret_store, &config.service.name);
    let mut c = (*config).clone();
    if ingest {
        let (u, p) = credentials(&store, &c.ingest.mqtt.secret_name).await?;
        (c.ingest.mqtt.username, c.ingest.mqtt.password) = (Some(u), Some(p));
    }
    if bus {
        let (u, p) = credentials(&store, &c.edgex.message_bus.secret_name).await?;
        (c.edgex.message_bus.username, c.edgex.message_bus.password) = (Some(u), Some(p));
    }
    Ok(Arc::new(c))
}

async fn credentials(store: &SecretStoreClient, name: &str) -> anyhow::Result<(String, String)> {
    let mut tries = 0;
    loop {
        match store.credentials(name).await {
            Ok(c) => {
                tracing::info!(
                    secret = name,
                    "MQTT credentials read from the EdgeX secret store"
                );
                return Ok(c);
            }
            Err(e @ (StoreError::Http(_) | StoreError::NoToken { .. })) if tries < 10 => {
                tries += 1;
                tracing::warn!(error = %e, secret = name, "waiting for the EdgeX secret store");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                anyhow::bail!("the MQTT credentials in secret {name:?} could not be read: {e}")
            }
        }
    }
}

fn log_failure(e: &StoreError) {
    tracing::error!(error = %e, "keys could not be read from the EdgeX secret store: devices waiting for them stay waiting (retried every SecretStore.KeyPoll)");
}

/// A devices-file device's session from the store: used (kept in memory
/// only). Whether it was.
fn file_device_keys(api: &Plane, name: &str, data: &[(String, String)]) -> bool {
    let Some(id) = api.devices.id(name) else {
        return true;
    };
    let known = *api.devices.get(id).dev_addr.lock().expect("lock");
    let session = match session_from_secret_data(name, data, known) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(device = %name, error = %e, "the secret store's secret for this device does not hold its session");
            return false;
        }
    };
    let _ = api
        .secrets
        .lock()
        .expect("secrets lock")
        .put(name, &session);
    tracing::info!(device = %name, "session keys read from the EdgeX secret store");
    crate::control::secret::use_session(api, id, session)
}
