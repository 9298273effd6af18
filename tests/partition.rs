//! The handover under real network faults, not killed processes: the
//! customer and the provider each run in a network namespace of their own,
//! joined to this test's namespace (the site: broker, core-data stand-in,
//! the simulated gateway) by veth pairs, routed through it.
//!
//! 1. The customer's link goes down without a close (`ip link set down`:
//!    power lost, cable pulled). Nothing closes the heartbeat stream; the
//!    provider takes over when the heartbeats stop (250 ms × 4). The link
//!    comes back: the customer's next message is refused as stale, and it
//!    takes its devices back under a higher epoch.
//! 2. Only the path between the two edges is cut (iptables drops their
//!    packets both ways where this namespace routes them), while both still reach the broker and core-data: a
//!    partition. The provider cannot tell it from a dead customer and takes
//!    over; the customer keeps publishing its devices (the contract's rule:
//!    the customer keeps them). Both publish the same frames under the same
//!    event ids, so core-data stores each once (409 for the second). Healed,
//!    the customer learns it was fenced and takes back.
//!
//! Every frame sent is stored exactly once, no counter reset is seen, and
//! each holding ends with a receipt both edges keep. Needs root (CI runs as
//! root), `ip` (iproute2), iptables, mosquitto.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use device_lorawan::handover::identity::Identity;
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, Target};

const SEED: u64 = 77;
const DEVICES: usize = 3;
/// The site's addresses: this namespace's ends of the two veth pairs.
const SITE_C: &str = "10.201.1.1";
const SITE: &str = "10.201.2.1";
const CUSTOMER: &str = "10.201.1.2";
const PROVIDER: &str = "10.201.2.2";

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and their veth pairs; removed on drop.
struct Net {
    c: String,
    p: String,
    /// This namespace's end of the customer's pair, and of the provider's.
    vc: String,
    vp: String,
    forwarding: String,
}

impl Net {
    fn up() -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc_geteuid() } != 0 {
            common::skip::skip(
                "root (network namespaces)",
                "run the tests as root, as CI does",
            );
            return None;
        }
        if !common::require("ip") || !common::require("iptables") || !common::require("mosquitto") {
            return None;
        }
        let id = std::process::id() % 100_000;
        let net = Self {
            c: format!("dlc{id}"),
            p: format!("dlp{id}"),
            vc: format!("dvc{id}"),
            vp: format!("dvp{id}"),
            forwarding: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim()
                .to_string(),
        };
        for (ns, veth, site, edge, subnet) in [
            (&net.c, &net.vc, SITE_C, CUSTOMER, "10.201.1"),
            (&net.p, &net.vp, SITE, PROVIDER, "10.201.2"),
        ] {
            let peer = format!("{veth}b");
            sh(&["ip", "netns", "add", ns]);
            sh(&[
                "ip", "link", "add", veth, "type", "veth", "peer", "name", &peer,
            ]);
            sh(&["ip", "link", "set", &peer, "netns", ns]);
            sh(&["ip", "addr", "add", &format!("{site}/24"), "dev", veth]);
            sh(&["ip", "link", "set", veth, "up"]);
            let inside = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", ns.as_str()];
                v.extend_from_slice(args);
                sh(&v);
            };
            inside(&["ip", "link", "set", "lo", "up"]);
            inside(&["ip", "addr", "add", &format!("{edge}/24"), "dev", &peer]);
            inside(&["ip", "link", "set", &peer, "up"]);
            inside(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("{subnet}.1"),
            ]);
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        Some(net)
    }

    /// The customer's link down or up: no FIN, no RST, nothing.
    fn customer_link(&self, up: bool) {
        sh(&[
            "ip",
            "link",
            "set",
            &self.vc,
            if up { "up" } else { "down" },
        ]);
    }

    /// Drop every packet between the two edges (both ways), or stop.
    /// (This namespace routes between them; iptables, since kernels built
    /// without netem or prio qdiscs are common in VMs.)
    fn partition(&self, on: bool) {
        let op = if on { "-I" } else { "-D" };
        for (from, to) in [(CUSTOMER, PROVIDER), (PROVIDER, CUSTOMER)] {
            sh(&[
                "iptables", op, "FORWARD", "-s", from, "-d", to, "-j", "DROP",
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.c, &self.p] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for v in [&self.vc, &self.vp] {
            let _ = Command::new("ip")
                .args(["link", "del", v])
                .stderr(Stdio::null())
                .status();
        }
        for (from, to) in [(CUSTOMER, PROVIDER), (PROVIDER, CUSTOMER)] {
            let _ = Command::new("iptables")
                .args(["-D", "FORWARD", "-s", from, "-d", to, "-j", "DROP"])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.forwarding);
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_tcp(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One edge: its files, its API and (for the provider) handover addresses.
struct Edge {
    dir: tempfile::TempDir,
    config: PathBuf,
    api: SocketAddr,
    ns: String,
}

impl Edge {
    fn new(
        name: &str,
        ns: &str,
        host: &str,
        devices: &str,
        broker: SocketAddr,
        core: &str,
        listen: Option<SocketAddr>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let devices_path = dir.path().join("devices.yaml");
        std::fs::write(&devices_path, devices).unwrap();
        let api: SocketAddr = format!("{host}:{}", common::free_port()).parse().unwrap();
        let config = dir.path().join("config.yaml");
        let mut text = format!(
            "Service: {{ Name: {name}, DataDir: {data}, ApiBind: \"{api}\" }}\n\
             Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
             Ingest: {{ DedupWindow: 200ms, Udp: {{ Enabled: false }}, Mqtt: {{ Enabled: true, Host: \"{bh}\", Port: {bp}, ClientId: {name} }} }}\n\
             Readings: {{ JsonLines: \"\" }}\n\
             Edgex: {{ Delivery: rest, CoreData: {{ Url: \"{core}\" }} }}\n\
             Log: {{ Level: \"info,device_lorawan::handover=debug\" }}\n",
            data = dir.path().join("data").display(),
            devices = devices_path.display(),
            profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"),
            bh = broker.ip(),
            bp = broker.port(),
        );
        if let Some(l) = listen {
            text.push_str(&format!("Handover: {{ Listen: \"{l}\" }}\n"));
        }
        std::fs::write(&config, text).unwrap();
        Identity::create(&dir.path().join("data/identity")).unwrap();
        Self {
            dir,
            config,
            api,
            ns: ns.to_string(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns,
            env!("CARGO_BIN_EXE_device-lorawan"),
        ]);
        c.env_remove("RUST_BACKTRACE");
        c
    }

    fn start(&self) -> Proc {
        let log = std::fs::File::create(self.dir.path().join("service.log")).unwrap();
        let child = self
            .command()
            .args(["run", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_tcp(self.api, "the service's API");
        Proc(child)
    }

    fn metric(&self, name: &str) -> u64 {
        common::scrape(self.api, name).unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    fn receipts(&self) -> Vec<PathBuf> {
        let dir: &Path = &self.dir.path().join("data/handover");
        let mut v = Vec::new();
        for side in ["customer/receipts", "provider/receipts"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(side)) {
                v.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_and_a_partition_are_taken_over_and_handed_back_losing_and_doubling_nothing() {
    let Some(net) = Net::up() else {
        return;
    };
    // The site: a broker and core-data on this namespace's address.
    let bdir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bdir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let broker: SocketAddr = format!("{SITE}:{}", common::free_port()).parse().unwrap();
    let conf = bdir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {} {}\nallow_anonymous true\nmax_queued_messages 0\n",
            broker.port(),
            broker.ip()
        ),
    )
    .unwrap();
    let _mosquitto = Proc(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_tcp(broker, "mosquitto");
    let core = common::core_data::CoreData::start_on(SITE).await;

    let entries = mote::entries(DEVICES, SEED);
    let listen: SocketAddr = format!("{PROVIDER}:{}", common::free_port())
        .parse()
        .unwrap();
    let b = Edge::new(
        "edge-b",
        &net.p,
        PROVIDER,
        "devices: []\n",
        broker,
        &core.url(),
        Some(listen),
    );
    let a = Edge::new(
        "edge-a",
        &net.c,
        CUSTOMER,
        &mote::devices_yaml(&entries),
        broker,
        &core.url(),
        None,
    );
    let _provider = b.start();
    let _customer = a.start();
    let logs = || {
        eprintln!(
            "--- customer ---\n{}\n--- provider ---\n{}",
            a.log(),
            b.log()
        );
    };
    let key = std::fs::read_to_string(b.dir.path().join("data/identity/identity.pub")).unwrap();
    let out = a
        .command()
        .args([
            "handover",
            "offer",
            "--to",
            &listen.to_string(),
            "--provider-key",
            key.trim(),
            "--id",
            "site-1",
            "--config",
        ])
        .arg(&a.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "offer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::until(
        "the customer took the contract up",
        Duration::from_secs(15),
        || a.metric("handover_releases_total") >= 1,
    )
    .await;
    common::until("the provider armed", Duration::from_secs(15), || {
        b.dir
            .path()
            .join("data/handover/provider/sessions/site-1.pb")
            .exists()
    })
    .await;

    // 6 frames a second, heard by both edges through the broker.
    let opts = SimOptions {
        devices: DEVICES,
        gateways: 2,
        rate: 6.0,
        frames: Some(150),
        duration: None,
        seed: SEED,
        ..SimOptions::default()
    };
    let target = Target::Mqtt {
        host: SITE.into(),
        port: broker.port(),
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let sim = tokio::spawn(sim::run(target, opts, std::future::pending()));
    common::until("the customer delivering", Duration::from_secs(15), || {
        core.stored() >= 12
    })
    .await;

    // 1. The customer's link is lost without a close.
    let stored = core.stored();
    net.customer_link(false);
    let cut = Instant::now();
    let t = Instant::now();
    while b.metric("handover_takeovers_total") < 1 {
        if t.elapsed() > Duration::from_secs(10) {
            logs();
            panic!("the provider did not take over a lost link");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    common::until(
        "the provider's first event",
        Duration::from_secs(10),
        || core.stored() > stored,
    )
    .await;
    eprintln!(
        "link cut: first provider event after {} ms",
        cut.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.customer_link(true);
    let t = Instant::now();
    while a.metric("handover_releases_total") < 2 {
        if t.elapsed() > Duration::from_secs(20) {
            logs();
            panic!("the customer did not take back after the link returned");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 2. A partition: both edges still reach the site, not each other.
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.partition(true);
    let t = Instant::now();
    while b.metric("handover_takeovers_total") < 2 {
        if t.elapsed() > Duration::from_secs(10) {
            logs();
            panic!("the provider did not take over in a partition");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both publish for a while: the customer keeps its devices.
    let customer_before = a.metric("lorawan_uplinks_published_total");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        a.metric("lorawan_uplinks_published_total") > customer_before,
        "the customer keeps publishing in a partition"
    );
    net.partition(false);
    let t = Instant::now();
    while a.metric("handover_releases_total") < 3 {
        if t.elapsed() > Duration::from_secs(20) {
            logs();
            panic!("the customer did not take back after the partition healed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every frame sent, stored once.
    let report = sim.await.unwrap().unwrap();
    let euis: std::collections::BTreeMap<String, String> = entries
        .iter()
        .map(|e| (e.name.clone(), e.dev_eui.to_string()))
        .collect();
    let want: std::collections::BTreeSet<String> = report
        .expected
        .iter()
        .map(|e| {
            device_lorawan::edgex::event::event_id(&euis[&e.device], e.epoch, e.fcnt).to_string()
        })
        .collect();
    let t = Instant::now();
    while !want
        .iter()
        .all(|id| core.state.events.lock().unwrap().contains_key(id))
    {
        if t.elapsed() > Duration::from_secs(30) {
            logs();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let events = core.state.events.lock().unwrap();
        let invalid = core.state.invalid.lock().unwrap();
        common::assert_stored_exactly(&events, &invalid, &want);
    }
    for e in [&a, &b] {
        assert_eq!(
            e.metric("lorawan_counter_resets_total"),
            0,
            "no false reboots"
        );
    }
    eprintln!(
        "core-data: {} posts, {} answered 409 (the partition's frames both edges published)",
        core.state.posts.load(std::sync::atomic::Ordering::Relaxed),
        core.state
            .conflicts
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    // Each holding ended with a receipt, kept and verified on both edges.
    common::until(
        "both holdings' receipts on both edges",
        Duration::from_secs(10),
        || a.receipts().len() == 2 && b.receipts().len() == 2,
    )
    .await;
    for r in a.receipts() {
        let out = a
            .command()
            .args(["handover", "receipt", "verify"])
            .arg(&r)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("customer's signatures hold"), "{text}");
    }
}
