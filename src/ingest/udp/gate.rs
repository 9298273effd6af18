//! Who may speak Semtech UDP to us. The protocol has no authentication, so
//! anyone on the LAN can send a PULL_DATA in a gateway's name and have its
//! downlinks sent elsewhere. Two guards, pure: an optional allow-list of
//! gateway EUIs, and address pinning: once a gateway pulled from an IP, a
//! PULL_DATA in its name from another IP is refused (the port may change,
//! as NAT rebinds it), unless `FollowAddress` is set for gateways whose
//! address really moves (DHCP).

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::lorawan::Eui64;

#[derive(Debug, Clone, Default)]
pub struct Gate {
    allowed: Option<Vec<Eui64>>,
    follow: bool,
}

impl Gate {
    pub fn new(allowed: Option<Vec<Eui64>>, follow: bool) -> Self {
        Self { allowed, follow }
    }

    /// Whether `gateway` may send at all.
    pub fn allows(&self, gateway: Eui64) -> Result<(), String> {
        match &self.allowed {
            Some(list) if !list.contains(&gateway) => Err(format!(
                "gateway {gateway} is not on Ingest.Udp.AllowedGateways"
            )),
            _ => Ok(()),
        }
    }

    /// A PULL_DATA of `gateway` from `peer`: record where its downlinks go,
    /// or refuse it.
    pub fn pull(
        &self,
        addrs: &mut HashMap<Eui64, (SocketAddr, u8)>,
        gateway: Eui64,
        peer: SocketAddr,
        version: u8,
    ) -> Result<(), String> {
        self.allows(gateway)?;
        if let Some((known, _)) = addrs.get(&gateway) {
            if known.ip() != peer.ip() && !self.follow {
                return Err(format!(
                    "PULL_DATA for gateway {gateway} from {peer}: it is pinned to {} (Ingest.Udp.FollowAddress is off)",
                    known.ip()
                ));
            }
        }
        addrs.insert(gateway, (peer, version));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pinned_by_ip_following_the_port() {
        let g = Gate::new(None, false);
        let mut m = HashMap::new();
        let gw = Eui64::from_u64(1);
        g.pull(&mut m, gw, a("10.0.0.2:4000"), 2).unwrap();
        g.pull(&mut m, gw, a("10.0.0.2:4001"), 2).unwrap();
        assert_eq!(m[&gw].0, a("10.0.0.2:4001"), "NAT rebinding the port");
        let e = g.pull(&mut m, gw, a("10.0.0.66:4000"), 2).unwrap_err();
        assert!(e.contains("pinned to 10.0.0.2"), "{e}");
        assert_eq!(m[&gw].0, a("10.0.0.2:4001"), "not redirected");
        let g = Gate::new(None, true);
        g.pull(&mut m, gw, a("10.0.0.66:4000"), 2).unwrap();
        assert_eq!(m[&gw].0, a("10.0.0.66:4000"), "following");
    }

    #[test]
    fn the_allow_list() {
        let g = Gate::new(Some(vec![Eui64::from_u64(1)]), false);
        assert!(g.allows(Eui64::from_u64(1)).is_ok());
        assert!(g.allows(Eui64::from_u64(2)).is_err());
        let mut m = HashMap::new();
        assert!(g
            .pull(&mut m, Eui64::from_u64(2), a("10.0.0.2:1"), 2)
            .is_err());
        assert!(m.is_empty());
    }
}
