//! The pipeline as MAC peer: before an uplink is published, its MAC
//! commands go through the device's [`MacState`] (answers to give,
//! requests to make, DevStatus readings to add); the scheduler sends the
//! commands in the uplink's window and reports back which a gateway sent.
//! The decisions are `lorawan::mac`'s; this part keeps the states durable
//! (`DataDir/mac.log`) and turns them into readings, metrics and logs.

use crate::lorawan::mac::Decision;
use crate::pipeline::uplink::Uplink;

impl super::Pipeline {
    /// Uplink `up` of device `id` through its MAC state, before it is
    /// published (a network server's relayed uplink: its MAC layer is its own).
    pub(super) fn mac_step(&mut self, id: u32, up: &mut Uplink) -> anyhow::Result<Decision> {
        if up.source == crate::metrics::Source::ApplicationMqtt {
            return Ok(Decision::default());
        }
        let device = self.registry.get(id);
        let region = self.scheduler.region_of(device.region);
        Ok(self
            .mac
            .on_uplink(id, device, region, &self.config.downlink, up, &self.metrics)?)
    }

    /// A gateway's answer to a transmission: the MAC requests it carried
    /// now wait for the device's answers; a class C device's next command
    /// goes out.
    pub(super) fn tx_ack(&mut self, ack: crate::downlink::TxAck) -> anyhow::Result<()> {
        if let Some(sent) = self.scheduler.on_ack(ack, &mut self.store)? {
            let device = self.registry.get(sent.device);
            self.mac.on_sent(
                sent.device,
                device,
                &sent.commands,
                sent.fcnt,
                &self.metrics,
            )?;
        }
        self.class_c();
        Ok(())
    }

    /// Offer every class C device's waiting command to the scheduler: it
    /// sends each device's next one at once, on RX2. A device heard on a
    /// network server's application stream (any class) has its next one
    /// handed to that server's queue at once.
    pub(super) fn class_c(&mut self) {
        for name in self.scheduler.waiting() {
            let Some(id) = self.registry.by_name(&name) else {
                continue;
            };
            let device = self.registry.get(id);
            if self.scheduler.forwards(id) {
                // Its network server queues it (any class).
                self.scheduler.forward(id, &device.name, device.dev_eui);
                continue;
            }
            if device.class != crate::devices::DeviceClass::C {
                continue;
            }
            let listens = self.mac.rx_of(id, self.scheduler.region_of(device.region));
            self.scheduler.on_queued(id, device, &self.store, listens);
        }
    }
}
