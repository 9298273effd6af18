//! Network namespaces for the handover's fault tests and benches: the
//! customer and the provider each in a namespace of its own, joined to the
//! test's namespace (the site: broker, core-data stand-in, the simulated
//! gateway) by veth pairs and routed through it, so a link can be lost
//! without a close and a partition made between the edges only. Needs root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use device_lorawan::handover::identity::Identity;

/// The site's addresses: this namespace's ends of the two veth pairs.
pub const SITE_C: &str = "10.201.1.1";
pub const SITE: &str = "10.201.2.1";
pub const CUSTOMER: &str = "10.201.1.2";
pub const PROVIDER: &str = "10.201.2.2";

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and their veth pairs; removed on drop.
pub struct Net {
    pub c: String,
    pub p: String,
    /// This namespace's end of the customer's pair, and of the provider's.
    vc: String,
    vp: String,
    forwarding: String,
}

impl Net {
    pub fn up() -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc_geteuid() } != 0 {
            super::skip::skip(
                "root (network namespaces)",
                "run the tests as root, as CI does",
            );
            return None;
        }
        if !super::require("ip") || !super::require("iptables") || !super::require("mosquitto") {
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
    pub fn customer_link(&self, up: bool) {
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
    pub fn partition(&self, on: bool) {
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
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_tcp(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One edge: its files, its API and (for the provider) handover addresses.
pub struct Edge {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub api: SocketAddr,
    ns: String,
}

impl Edge {
    pub fn new(
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
        let api: SocketAddr = format!("{host}:{}", super::free_port()).parse().unwrap();
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

    pub fn command(&self) -> Command {
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

    pub fn start(&self) -> Proc {
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

    /// `handover offer` of this edge's devices to `provider`, listening
    /// on `to`, as contract `id`.
    pub fn offer(&self, to: SocketAddr, provider: &Edge, id: &str) {
        let key = std::fs::read_to_string(provider.dir.path().join("data/identity/identity.pub"))
            .unwrap();
        let out = self
            .command()
            .args(["handover", "offer", "--to", &to.to_string()])
            .args(["--provider-key", key.trim(), "--id", id, "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "offer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn metric(&self, name: &str) -> u64 {
        super::scrape(self.api, name).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    pub fn receipts(&self) -> Vec<PathBuf> {
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

/// The site: a broker and core-data on this namespace's address.
pub struct Site {
    pub broker: SocketAddr,
    pub core: super::core_data::CoreData,
    _mosquitto: Proc,
    _dir: tempfile::TempDir,
}

impl Site {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let broker: SocketAddr = format!("{SITE}:{}", super::free_port()).parse().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} {}\nallow_anonymous true\nmax_queued_messages 0\n",
                broker.port(),
                broker.ip()
            ),
        )
        .unwrap();
        let mosquitto = Proc(
            Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_tcp(broker, "mosquitto");
        let core = super::core_data::CoreData::start_on(SITE).await;
        Self {
            broker,
            core,
            _mosquitto: mosquitto,
            _dir: dir,
        }
    }
}
