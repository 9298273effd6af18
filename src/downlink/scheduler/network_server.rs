//! Commands for devices whose network server is in front: a device heard
//! only on ChirpStack's application stream has no session here (ChirpStack
//! holds its keys, counters and windows), so its queued commands go to
//! ChirpStack's device queue (`command/down` of its MQTT integration), which
//! sends them in the device's receive windows.
//!
//! A command leaves our durable queue only once the MQTT client holds it for
//! the broker (its [`TxAck`] is `Ok`); one command per device is on its way
//! at a time, so ChirpStack queues them in the order they were given.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;

use super::Scheduler;
use crate::downlink::{AppCommand, TxAck};
use crate::ingest::application::AppRoute;
use crate::lorawan::Eui64;

/// A command handed to the MQTT ingest, waiting for its answer.
pub(super) struct Forwarded {
    device: u32,
    name: Arc<str>,
    seq: u64,
}

impl Scheduler {
    /// Remember where device `id`'s commands go (each of its
    /// application-stream uplinks says; the route is shared, so this is a
    /// pointer comparison per uplink).
    pub fn route(&mut self, id: u32, route: &Arc<AppRoute>) {
        if !self.routes.get(&id).is_some_and(|r| Arc::ptr_eq(r, route)) {
            self.routes.insert(id, route.clone());
        }
    }

    /// Device `id`'s commands go to its network server.
    pub fn forwards(&self, id: u32) -> bool {
        self.routes.contains_key(&id)
    }

    /// Hand device `id`'s next queued command to its network server, unless
    /// one of its commands is already on its way (its answer forwards the
    /// next) or downlinks are disabled.
    pub fn forward(&mut self, id: u32, name: &Arc<str>, dev_eui: Eui64) {
        if !self.cfg.enabled
            || self.queue.is_empty()
            || self.forwarded.values().any(|f| f.device == id)
        {
            return;
        }
        let Some((command, _)) = self.queue.front(name) else {
            return;
        };
        let (Some(route), Some(tx)) = (self.routes.get(&id).cloned(), self.tx.app.clone()) else {
            // Heard on a stream whose server takes no commands from us
            // (loraserver v3's `.../rx`): said at each of its uplinks.
            self.fail(
                name,
                "its network server's stream names no command topic (ChirpStack v4's .../event/up does): the command waits",
            );
            return;
        };
        let id_sent = self.new_id();
        let cmd = AppCommand {
            id: id_sent,
            route,
            dev_eui,
            fport: command.fport,
            confirmed: command.confirmed,
            payload: command.payload,
        };
        match tx.try_send(cmd) {
            Ok(()) => {
                self.metrics.downlinks_sent.fetch_add(1, Relaxed);
                self.forwarded.insert(
                    id_sent,
                    Forwarded {
                        device: id,
                        name: name.clone(),
                        seq: command.seq,
                    },
                );
            }
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.fail(name, "the MQTT client is not keeping up");
            }
        }
    }

    /// The MQTT ingest's answer to a forwarded command: `None` if `ack` is
    /// not one (a gateway's).
    pub(super) fn forwarded_ack(&mut self, ack: &TxAck) -> Option<()> {
        let f = self.forwarded.remove(&ack.id)?;
        match &ack.result {
            Ok(()) => {
                self.metrics.downlinks_acked.fetch_add(1, Relaxed);
                tracing::info!(device = %f.name, command = f.seq, "command handed to the network server's queue");
                if let Err(e) = self.queue.done(&f.name, f.seq) {
                    tracing::error!(device = %f.name, error = %e, "forwarded command still queued");
                }
            }
            Err(reason) => {
                self.fail(
                    &f.name,
                    &format!("the network server's queue was not reached ({reason})"),
                );
                self.refused_seq(&f.name, f.seq);
            }
        }
        Some(())
    }
}
