//! EdgeX's own record of a holding: the customer asks core-data for each
//! event a receipt lists (`GET /api/v3/event/id/{id}`; event ids follow
//! from the device, counter epoch and FCnt), so a receipt that claims
//! frames EdgeX never stored is disputed. The provider signs what it says
//! it delivered; core-data is the one witness neither edge writes.
//!
//! Events on the message bus reach core-data a moment after the broker
//! took them: an absent event is asked again for a short while before it
//! counts as unrecorded. A core-data that cannot be asked (down, another
//! error) proves nothing either way: the check is skipped, and said.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use hyper::{Method, StatusCode};

use super::receipt::{frames, Delivery, Frame};
use crate::edgex::http::{HttpError, JsonClient};

/// Asked at once, at most.
const IN_FLIGHT: usize = 16;
/// At most this many listed events are asked for; past it, an evenly
/// spread sample (a long holding of a big site lists many).
pub const MAX_ASKED: usize = 10_000;
/// How long an absent event may still be on its way to core-data.
const SETTLE_FOR: Duration = Duration::from_secs(3);
const ASK_AGAIN_EVERY: Duration = Duration::from_millis(250);

/// Why EdgeX's records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("asking core-data for event {id}: {source}")]
    Unreachable { id: String, source: HttpError },
    #[error("core-data answered {status} for event {id}")]
    Answer { id: String, status: StatusCode },
}

/// What core-data says of the events a receipt lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Listed frames core-data has no event for, by DevEUI (hex).
    pub unrecorded: Vec<(String, Frame)>,
    /// How many were asked for, of how many listed.
    pub asked: usize,
    pub listed: usize,
}

/// core-data, as the customer reaches it.
pub struct EdgexRecords {
    client: JsonClient,
}

impl EdgexRecords {
    pub fn new(client: JsonClient) -> Self {
        Self { client }
    }

    /// core-data as `config` names it, when this edge delivers to EdgeX
    /// (on the bus, core-data is where EdgeX keeps what it took).
    pub fn of(config: &crate::config::Config) -> Option<Self> {
        use crate::config::Delivery;
        let cd = &config.edgex.core_data;
        match config.edgex.delivery {
            Delivery::None => None,
            Delivery::Rest | Delivery::MessageBus => {
                Some(Self::new(JsonClient::new(&cd.url, cd.timeout)))
            }
        }
    }

    /// The listed frames of `devices` that core-data does not have.
    pub async fn check(&self, devices: &[Delivery]) -> Result<Checked, RecordsError> {
        let listed: Vec<(String, Frame)> = devices
            .iter()
            .flat_map(|d| frames(&d.runs).map(move |f| (d.dev_eui.clone(), f)))
            .collect();
        let total = listed.len();
        let mut pending = sample(listed, MAX_ASKED);
        let asked = pending.len();
        let deadline = Instant::now() + SETTLE_FOR;
        loop {
            let answers: Vec<_> = stream::iter(pending.iter().cloned())
                .map(|(eui, f)| async move {
                    let present = self.present(&eui, f).await;
                    (eui, f, present)
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            let mut absent = Vec::new();
            for (eui, f, present) in answers {
                if !present? {
                    absent.push((eui, f));
                }
            }
            absent.sort();
            if absent.is_empty() || Instant::now() >= deadline {
                return Ok(Checked {
                    unrecorded: absent,
                    asked,
                    listed: total,
                });
            }
            pending = absent;
            tokio::time::sleep(ASK_AGAIN_EVERY).await;
        }
    }

    async fn present(&self, dev_eui: &str, f: Frame) -> Result<bool, RecordsError> {
        let id = crate::edgex::event::event_id(dev_eui, f.epoch, f.fcnt).to_string();
        let path = format!("/api/v3/event/id/{id}");
        match self.client.send(Method::GET, &path, None).await {
            Ok((StatusCode::OK, _)) => Ok(true),
            Ok((StatusCode::NOT_FOUND, _)) => Ok(false),
            Ok((status, _)) => Err(RecordsError::Answer { id, status }),
            Err(source) => Err(RecordsError::Unreachable { id, source }),
        }
    }
}

/// At most `n` of `all`, evenly spread, in order.
fn sample<T>(all: Vec<T>, n: usize) -> Vec<T> {
    let len = all.len();
    if len <= n {
        return all;
    }
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| i * n / len != (i + 1) * n / len)
        .map(|(_, t)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_evenly_spread_and_bounded() {
        let all: Vec<usize> = (0..25).collect();
        let s = sample(all.clone(), 5);
        assert_eq!(s.len(), 5);
        assert_eq!(s, vec![4, 9, 14, 19, 24]);
        assert_eq!(sample(all.clone(), 100), all);
        assert_eq!(sample(Vec::<u8>::new(), 3), Vec::<u8>::new());
    }
}
