//! Entry points for coverage-guided fuzzing: one function per parser of
//! input we do not control, from the radio to the SD card.
//!
//! The `fuzz/` crate (cargo-fuzz, nightly) wraps each in a libFuzzer target;
//! `tests/fuzz_corpora.rs` replays the committed corpora and every crash
//! reproducer through the same functions on the stable toolchain, so CI
//! keeps them as regression tests without nightly. A target returns
//! nothing: an error is a fine outcome, a panic (overflow checks are on in
//! fuzz and test builds) or a broken invariant is the finding.
//!
//! Files read back from disk are fuzzed through their real `open`, in a
//! scratch directory per thread (tmpfs when there is one).

mod disk;
mod seeds;
mod text;
mod wire;

pub use seeds::seeds;
use std::path::PathBuf;

/// A fuzz target: its name (the directory of its corpus) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in data-flow order.
pub const TARGETS: &[Target] = &[
    Target {
        name: "udp_datagram",
        run: wire::udp_datagram,
    },
    Target {
        name: "gateway_bridge",
        run: wire::gateway_bridge,
    },
    Target {
        name: "application_json",
        run: wire::application_json,
    },
    Target {
        name: "station_message",
        run: wire::station_message,
    },
    Target {
        name: "phy_payload",
        run: wire::phy_payload,
    },
    Target {
        name: "mac_state",
        run: wire::mac_state,
    },
    Target {
        name: "decode_behind_mic",
        run: wire::decode_behind_mic,
    },
    Target {
        name: "js_output",
        run: wire::js_output,
    },
    Target {
        name: "downlink_ack",
        run: wire::downlink_ack,
    },
    Target {
        name: "handover_grpc",
        run: wire::handover_grpc,
    },
    Target {
        name: "api_body",
        run: text::api_body,
    },
    Target {
        name: "config_yaml",
        run: text::config_yaml,
    },
    Target {
        name: "devices_yaml",
        run: text::devices_yaml,
    },
    Target {
        name: "profile_yaml",
        run: text::profile_yaml,
    },
    Target {
        name: "counter_log",
        run: disk::counter_log,
    },
    Target {
        name: "outbox_journal",
        run: disk::outbox_journal,
    },
    Target {
        name: "downlink_queue",
        run: disk::downlink_queue,
    },
    Target {
        name: "state_log",
        run: disk::state_log,
    },
    Target {
        name: "secrets_file",
        run: disk::secrets_file,
    },
    Target {
        name: "contract",
        run: disk::contract,
    },
    Target {
        name: "image_store",
        run: disk::image_store,
    },
    Target {
        name: "image_tar",
        run: disk::image_tar,
    },
    Target {
        name: "elf",
        run: disk::elf,
    },
];

/// Run the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    let t = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    (t.run)(data)
}

/// An empty scratch directory of this thread (created once, emptied per
/// call), on tmpfs when the machine has one.
fn scratch() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = {
            let base = if std::path::Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let id = format!("{:?}", std::thread::current().id());
            let id: String = id.chars().filter(char::is_ascii_digit).collect();
            base.join(format!("device-lorawan-fuzz-{}-{id}", std::process::id()))
        };
    }
    DIR.with(|d| {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("scratch directory");
        d.clone()
    })
}

/// Remove this thread's scratch directory (the replay test's tidy-up).
pub fn remove_scratch() {
    let d = scratch();
    let _ = std::fs::remove_dir_all(d);
}

/// Reads a fuzz input as a sequence of small fields; past the end, zeros.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// Up to `max` bytes, the count taken from the input.
    fn take(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u8()).min(max).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
