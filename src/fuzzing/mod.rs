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

mod bytes;
mod disk;
mod scratch;
mod seeds;
mod text;
mod wire;

pub use scratch::remove_scratch;
pub use seeds::seeds;

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
