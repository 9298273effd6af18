//! Epoch fencing, as a state machine with no I/O: who publishes a
//! contract's devices, and under which epoch, given what arrives.
//!
//! The epoch only increases. The customer holds its epoch while its
//! heartbeats arrive; a takeover moves to epoch + 1 with the provider as
//! holder; the customer takes back by asking for release under an epoch
//! above the current one. A message under any other epoch is refused, so a
//! customer that was taken over (across a partition, say) learns it and
//! takes back the same way, and two sides never both count a device's
//! frames as theirs under one epoch. The provider's gRPC handlers ask this
//! module and persist what it returns; they decide nothing themselves.

use serde::{Deserialize, Serialize};

/// Who publishes the contract's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Holder {
    #[default]
    Customer,
    Provider,
}

impl Holder {
    pub fn as_str(self) -> &'static str {
        match self {
            Holder::Customer => "customer",
            Holder::Provider => "provider",
        }
    }
}

/// A contract's fence: its epoch and who holds the devices under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fence {
    pub epoch: u64,
    pub holder: Holder,
}

/// Why a message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An epoch the contract has moved past: the sender was taken over.
    #[error("stale epoch {given}: the current epoch is {current}; ask for release")]
    Stale { given: u64, current: u64 },
    /// An epoch above the current one, which only a release grants.
    #[error("epoch {given} was never granted (current {current})")]
    NeverGranted { given: u64, current: u64 },
    /// A release must move the epoch up.
    #[error("stale epoch {given}: release needs one above {current}")]
    ReleaseNotAbove { given: u64, current: u64 },
}

/// What the provider does on a release the fence grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The provider published the devices: it stops, and hands their
    /// counters, joins and MAC states back.
    pub stand_down: bool,
    /// The fence from now on (the customer holds, under its epoch).
    pub next: Fence,
}

impl Fence {
    /// A heartbeat or a session sync under `epoch`: accepted only under
    /// the current epoch.
    pub fn check(&self, epoch: u64) -> Result<(), Refusal> {
        match epoch.cmp(&self.epoch) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(Refusal::Stale {
                given: epoch,
                current: self.epoch,
            }),
            std::cmp::Ordering::Greater => Err(Refusal::NeverGranted {
                given: epoch,
                current: self.epoch,
            }),
        }
    }

    /// The fence after a takeover, if one is due: the customer holds, it
    /// has been silent past the contract's limit, and its sessions are
    /// armed here. The epoch moves up, so the silent customer's messages
    /// are refused from now on.
    pub fn take_over(&self, silent: bool, armed: bool) -> Option<Fence> {
        (self.holder == Holder::Customer && silent && armed).then_some(Fence {
            epoch: self.epoch + 1,
            holder: Holder::Provider,
        })
    }

    /// The fence after a takeover whose activation failed: the customer is
    /// holder again (under the new epoch), so the next tick tries again.
    pub fn activation_failed(&self) -> Fence {
        Fence {
            epoch: self.epoch,
            holder: Holder::Customer,
        }
    }

    /// The contract ended while the provider held the devices: it stops
    /// publishing them, and the epoch moves on so that nothing it said
    /// under the old one stands.
    pub fn lapse(&self) -> Option<Fence> {
        (self.holder == Holder::Provider).then_some(Fence {
            epoch: self.epoch + 1,
            holder: Holder::Customer,
        })
    }

    /// A release under `epoch`: granted only above the current epoch.
    pub fn release(&self, epoch: u64) -> Result<Release, Refusal> {
        if epoch <= self.epoch {
            return Err(Refusal::ReleaseNotAbove {
                given: epoch,
                current: self.epoch,
            });
        }
        Ok(Release {
            stand_down: self.holder == Holder::Provider,
            next: Fence {
                epoch,
                holder: Holder::Customer,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapse_stands_the_provider_down_under_a_new_epoch_and_nothing_else() {
        let held = Fence {
            epoch: 4,
            holder: Holder::Provider,
        };
        assert_eq!(
            held.lapse(),
            Some(Fence {
                epoch: 5,
                holder: Holder::Customer
            })
        );
        let customer = Fence {
            epoch: 4,
            holder: Holder::Customer,
        };
        assert_eq!(customer.lapse(), None);
    }
    use Holder::*;

    fn f(epoch: u64, holder: Holder) -> Fence {
        Fence { epoch, holder }
    }

    #[test]
    fn messages_pass_only_under_the_current_epoch() {
        let cases = [
            (f(3, Customer), 3, Ok(())),
            (f(3, Provider), 3, Ok(())),
            (
                f(3, Customer),
                2,
                Err(Refusal::Stale {
                    given: 2,
                    current: 3,
                }),
            ),
            (
                f(3, Provider),
                0,
                Err(Refusal::Stale {
                    given: 0,
                    current: 3,
                }),
            ),
            (
                f(3, Customer),
                4,
                Err(Refusal::NeverGranted {
                    given: 4,
                    current: 3,
                }),
            ),
            (f(0, Customer), 0, Ok(())),
        ];
        for (fence, epoch, want) in cases {
            assert_eq!(fence.check(epoch), want, "{fence:?} given {epoch}");
        }
    }

    #[test]
    fn a_takeover_needs_a_silent_armed_customer_and_moves_the_epoch() {
        let cases = [
            // (fence, silent, armed) → next
            ((f(1, Customer), true, true), Some(f(2, Provider))),
            ((f(1, Customer), false, true), None),
            ((f(1, Customer), true, false), None),
            ((f(2, Provider), true, true), None),
            ((f(7, Customer), true, true), Some(f(8, Provider))),
        ];
        for ((fence, silent, armed), want) in cases {
            assert_eq!(
                fence.take_over(silent, armed),
                want,
                "{fence:?} silent {silent} armed {armed}"
            );
        }
        assert_eq!(f(2, Provider).activation_failed(), f(2, Customer));
    }

    #[test]
    fn a_release_moves_the_epoch_up_and_stands_the_provider_down() {
        let cases = [
            (
                f(2, Provider),
                3,
                Ok(Release {
                    stand_down: true,
                    next: f(3, Customer),
                }),
            ),
            (
                f(2, Customer),
                5,
                Ok(Release {
                    stand_down: false,
                    next: f(5, Customer),
                }),
            ),
            (
                f(2, Provider),
                2,
                Err(Refusal::ReleaseNotAbove {
                    given: 2,
                    current: 2,
                }),
            ),
            (
                f(2, Customer),
                1,
                Err(Refusal::ReleaseNotAbove {
                    given: 1,
                    current: 2,
                }),
            ),
        ];
        for (fence, epoch, want) in cases {
            assert_eq!(fence.release(epoch), want, "{fence:?} release {epoch}");
        }
    }

    #[test]
    fn after_a_takeover_the_silent_customer_is_refused_until_it_releases() {
        // The customer held epoch 1 and went quiet; the provider took over.
        let held = f(1, Customer);
        let taken = held.take_over(true, true).unwrap();
        // Its heartbeat under 1 comes back from a partition: refused, stale.
        assert!(matches!(taken.check(1), Err(Refusal::Stale { .. })));
        // It asks for release above the current epoch and holds again.
        let r = taken.release(taken.epoch + 1).unwrap();
        assert!(r.stand_down);
        assert_eq!(r.next.check(3), Ok(()));
        // The provider's messages under its old epoch are now stale.
        assert!(r.next.check(2).is_err());
    }
}
