//! `POST /api/v3/secret`: secrets the EdgeX way. A `secretName` naming a
//! device carries its session: NwkSKey, AppSKey and (unless the device has
//! one) DevAddr in `secretData`; it is stored first (an owner-only file, or
//! in EdgeX secure mode the EdgeX secret store), then handed to the pipeline, which decodes the device's frames from then on.
//! Any other name is stored as given, as the device SDK does. Nothing in an
//! answer or a log repeats a secret.

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::answer::{refuse, Answer, Refusal, API_VERSION};
use super::mailbox::Control;
use super::plane::Plane;
use crate::store::secrets::{
    session_data, session_from_secret_data, SecretError, SecretStore, Session,
};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretRequest {
    /// Required, as every EdgeX request DTO's (`BaseRequest`).
    #[allow(dead_code)]
    api_version: String,
    #[serde(default)]
    request_id: Option<String>,
    pub(crate) secret_name: String,
    secret_data: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    value: String,
}

/// The secret's name and its key/value pairs. serde's own messages may
/// quote input (a key, say): the error keeps only where it failed.
pub(crate) fn parse_request(body: &[u8]) -> Result<SecretRequest, String> {
    let req: SecretRequest = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a SecretRequest (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if req
        .request_id
        .as_deref()
        .is_some_and(|r| uuid::Uuid::parse_str(r).is_err())
    {
        return Err("requestId must be a UUID".into());
    }
    Ok(req)
}

impl SecretRequest {
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        self.secret_data
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect()
    }
}

pub async fn post(state: &Plane, body: &[u8]) -> Answer {
    let req = match parse_request(body) {
        Ok(r) => r,
        Err(e) => return refuse(Refusal::BadRequest, e),
    };
    let (name, data) = (&req.secret_name, req.pairs());
    let Some(id) = state.file_device(name) else {
        let local = |s: &mut SecretStore| s.put_other(name, &data);
        if let Err(a) = keep(state, name, &data, local).await {
            return a;
        }
        tracing::info!(secret = %name, "secret stored");
        if let Some(p) = state.provisioning.as_ref() {
            p.secret_arrived(name, &data);
        }
        return created(req.request_id);
    };
    let known = *state.devices.get(id).dev_addr.lock().expect("lock");
    let session = match session_from_secret_data(name, &data, known) {
        Ok(s) => s,
        Err(e) => return refuse(Refusal::BadRequest, e),
    };
    let local = |s: &mut SecretStore| s.put(name, &session);
    if let Err(a) = keep(state, name, &session_data(&session), local).await {
        return a;
    }
    if !use_session(state, id, session) {
        return refuse(Refusal::Internal, "the service is stopping");
    }
    tracing::info!(device = %req.secret_name, "session keys stored");
    created(req.request_id)
}

/// Hand a devices-file device's session (already kept) to the pipeline;
/// false when the service is stopping.
pub(crate) fn use_session(state: &Plane, id: u32, session: Session) -> bool {
    *state.devices.get(id).dev_addr.lock().expect("lock") = Some(session.dev_addr);
    state
        .control
        .send(Control::Session {
            device: id,
            session,
        })
        .is_ok()
}

/// Keep a secret before it is used: in the EdgeX secret store in secure
/// mode (then `local` only remembers it in memory), and by `local` in
/// `DataDir/secrets.yaml` otherwise. A failure is the 500 to answer (logged
/// and counted; never with the secret's data).
async fn keep(
    state: &Plane,
    name: &str,
    data: &[(String, String)],
    local: impl FnOnce(&mut SecretStore) -> Result<(), SecretError>,
) -> Result<(), Answer> {
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "secret not stored");
        refuse(Refusal::Internal, "the secret could not be stored")
    };
    if let Some(store) = &state.store {
        store.put(name, data).await.map_err(|e| {
            state.metrics.secret_store_errors.fetch_add(1, Relaxed);
            failed(&e)
        })?;
    }
    local(&mut state.secrets.lock().expect("secrets lock")).map_err(|e| failed(&e))
}

fn created(request_id: Option<String>) -> Answer {
    let mut body = json!({"apiVersion": API_VERSION, "statusCode": 201});
    if let Some(r) = request_id {
        body["requestId"] = json!(r);
    }
    (StatusCode::CREATED, body)
}
