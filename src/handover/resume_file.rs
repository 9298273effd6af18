//! The container takeover's two hand-offs, without overlap, through files
//! in the container's data directory (which the provider writes and the
//! container reads, `Handover.ResumeAfter` naming the first):
//!
//! - Start: the customer's image starts with its devices held (decoded, not
//!   published), and publishes them once the provider, having stood down
//!   itself, writes the counters to publish after ([`RESUME`]). Frames both
//!   heard meanwhile are published by exactly one of them: at or before the
//!   counters by the provider, after them by the container.
//! - Hand-back: the provider asks the container to stand by ([`STANDBY`]);
//!   the container publishes what it has heard, lets its journal reach
//!   EdgeX, and answers with the counters it delivered ([`STOOD_BY`]), which
//!   the provider passes on to the customer: it publishes only what comes
//!   after.

/// The counters the container publishes after (provider → container).
pub const RESUME: &str = "resume.json";
/// The provider asks the container to stand by (provider → container).
pub const STANDBY: &str = "standby";
/// The container's delivered counters once stood by (container → provider).
pub const STOOD_BY: &str = "stood-by.json";

/// Every hand-off file in `dir`, removed before a container starts there
/// (one left by an earlier takeover would be taken as this one's).
pub fn clear(dir: &Path) -> std::io::Result<()> {
    for f in [RESUME, STANDBY, STOOD_BY] {
        match std::fs::remove_file(dir.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::mailbox::Control;
use crate::lorawan::{Eui64, FcntState};

/// How often the held service looks for the file.
const LOOK_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct After {
    dev_eui: String,
    epoch: u32,
    fcnt: Option<u32>,
}

/// Write the counters to publish after (atomically: the reader never sees
/// half a file).
pub fn write(path: &Path, after: &[(Eui64, FcntState)]) -> std::io::Result<()> {
    let v: Vec<After> = after
        .iter()
        .map(|(e, s)| After {
            dev_eui: e.to_string(),
            epoch: s.epoch,
            fcnt: s.last,
        })
        .collect();
    let json = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, &json, 0o600)
}

/// The counters in a file [`write()`] wrote; `None` until it exists.
pub fn read(path: &Path) -> Option<Result<Vec<(Eui64, FcntState)>, String>> {
    let bytes = std::fs::read(path).ok()?;
    Some(
        serde_json::from_slice::<Vec<After>>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                v.into_iter()
                    .map(|a| {
                        let eui = Eui64::from_hex(&a.dev_eui).map_err(|e| e.to_string())?;
                        Ok((
                            eui,
                            FcntState {
                                last: a.fcnt,
                                epoch: a.epoch,
                            },
                        ))
                    })
                    .collect()
            }),
    )
}

/// Wait for the file, then publish `devices` after its counters (a device
/// it does not name: after none). A file that does not read is an error,
/// logged once; the devices stay held (nothing is published twice).
pub async fn wait_and_resume(
    path: std::path::PathBuf,
    devices: Vec<Eui64>,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
    delivered: Option<std::sync::Arc<crate::edgex::delivered::Delivered>>,
) {
    let mut said = false;
    let after = loop {
        match read(&path) {
            Some(Ok(after)) => break after,
            Some(Err(e)) if !said => {
                tracing::error!(path = %path.display(), error = %e, "the resume file does not read: the devices stay held");
                said = true;
            }
            _ => {}
        }
        tokio::time::sleep(LOOK_EVERY).await;
    };
    let known: std::collections::HashMap<Eui64, FcntState> = after.into_iter().collect();
    let after = crate::edgex::delivered::after_for(&devices, &known);
    tracing::info!(
        devices = devices.len(),
        "the provider stood down: publishing the handed-over devices"
    );
    let _ = Control::ask(&control, |done| Control::Resume {
        after,
        joins: Vec::new(),
        macs: Vec::new(),
        done,
    })
    .await;
    // Then, until the hand-back: asked to stand by, stop publishing, let
    // the journal reach EdgeX, and say what was delivered.
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    while !dir.join(STANDBY).exists() {
        tokio::time::sleep(LOOK_EVERY).await;
    }
    let list = devices.clone();
    let _ = Control::ask(&control, |done| Control::Standby {
        devices: list,
        done,
    })
    .await;
    let mut counters = Vec::new();
    if let Some(d) = delivered {
        d.wait_settled(&devices, Duration::from_secs(3)).await;
        let last = d.last();
        counters = devices
            .iter()
            .filter_map(|e| last.get(e).map(|s| (*e, *s)))
            .collect();
    }
    if let Err(e) = write(&dir.join(STOOD_BY), &counters) {
        tracing::error!(error = %e, "cannot tell the provider what was delivered");
    }
    tracing::info!("stood by for the hand-back");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_back_as_written_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resume.json");
        assert!(read(&path).is_none(), "not there yet");
        let after = vec![
            (
                Eui64::from_u64(1),
                FcntState {
                    last: Some(7),
                    epoch: 2,
                },
            ),
            (Eui64::from_u64(2), FcntState::default()),
        ];
        write(&path, &after).unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), after);
        std::fs::write(&path, b"{").unwrap();
        assert!(read(&path).unwrap().is_err());
    }
}
