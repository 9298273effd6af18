//! The `device-lorawan` command: parse the CLI, load config, call into the
//! library. Nothing else lives here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use device_lorawan::cli::demo;
use device_lorawan::config::{Config, LogFormat};
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::metrics::Metrics;
use device_lorawan::pipeline::sink;
use device_lorawan::service;
use device_lorawan::sim::{self, Faults, SimOptions, Target};

#[derive(Parser)]
#[command(
    version,
    about = "EdgeX device service for LoRaWAN sensors: its own network server, no other needed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Run {
        /// Configuration file (YAML); environment variables override it.
        #[arg(short, long, env = "DEVICE_LORAWAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Simulated LMIC ABP motes and gateways, sending to a running service.
    Simulate(SimulateArgs),
    /// Package this executable, the profiles and the configuration (secrets
    /// blanked, never keys) as a container image tar that docker, podman and
    /// balenaEngine load. Reproducible: the same inputs give the same bytes.
    /// A copy goes into the content-addressed store `<DataDir>/images`.
    Package {
        /// Where to write the image tar.
        #[arg(long)]
        out: PathBuf,
        /// Configuration file (YAML), for `Service.DataDir` and the rest.
        #[arg(short, long, env = "DEVICE_LORAWAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Make this edge's identity: an Ed25519 key pair for signing handover
    /// contracts and pinning TLS (default `<DataDir>/identity`; never replaced).
    Keygen {
        /// Where to keep the key pair (default: `<Service.DataDir>/identity`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Configuration file (YAML), for `Service.DataDir` and the rest.
        #[arg(short, long, env = "DEVICE_LORAWAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Hand this edge's devices over to a provider edge (Edge-as-a-Service).
    Handover {
        #[command(subcommand)]
        command: HandoverCommand,
        /// Configuration file (YAML), for `Service.DataDir` and the rest.
        #[arg(short, long, env = "DEVICE_LORAWAN_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// The IoT Edge Market: serve it, or check a copy of its log.
    Market {
        #[command(subcommand)]
        command: MarketCommand,
        /// Configuration file (YAML): `Market.Listen`, `Market.Database`,
        /// `Service.DataDir` (the market's identity and SQLite file).
        #[arg(short, long, env = "DEVICE_LORAWAN_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Run a profile's JavaScript codec outside the service.
    Codec {
        #[command(subcommand)]
        command: CodecCommand,
    },
    /// Make device profiles from vendors' device repositories.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Inspect the outbox journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Print the Arduino mote sketch's settings.h for one device of the
    /// devices file: its ABP session and receive windows.
    SketchSettings {
        /// The device's name in the devices file (an ABP device).
        #[arg(long)]
        device: String,
        /// The devices file (default: `Devices.File` of the config).
        #[arg(long)]
        devices: Option<PathBuf>,
        /// Configuration file (YAML), for `Service.DataDir` and the rest.
        #[arg(short, long, env = "DEVICE_LORAWAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The service and simulated motes together on loopback, printing readings.
    Demo {
        /// How long the demo runs before its summary (`8s`, `1m`).
        #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// How many ABP motes (an OTAA mote joins besides them).
        #[arg(long, default_value_t = 3)]
        devices: usize,
        /// How many gateways hear every mote.
        #[arg(long, default_value_t = 2)]
        gateways: usize,
        /// Frames per second, all motes together.
        #[arg(long, default_value_t = 4.0)]
        rate: f64,
        /// The gateways are LoRa Basics Stations (WebSockets) instead of
        /// Semtech UDP packet forwarders.
        #[arg(long)]
        station: bool,
    },
}

#[derive(Subcommand)]
enum MarketCommand {
    /// Serve the market and arbitrator (REST, signed calls).
    Serve,
    /// Check a copy of the market's log (`GET /api/v3/market/log`) offline:
    /// its hash chain and the market's signatures.
    Verify {
        file: PathBuf,
        /// The market's public key (default: the one the copy names).
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Subcommand)]
enum CodecCommand {
    /// Run a codec's examples; fails on a failed example. TARGET is a
    /// profile name (`<profile>.examples.yaml` against `<profile>.js` in
    /// --profiles-dir), or a vendor fixture file or folder as shipped: TTN
    /// device-repository codec YAML (`*-codec.yaml`), ChirpStack
    /// `test_decode_*.json` / `test_encode_*.json`, or our `*.examples.yaml`.
    Test {
        /// A profile name, or a fixture file or folder.
        target: String,
        /// Where profiles are, for a profile name.
        #[arg(long, default_value = "profiles")]
        profiles_dir: PathBuf,
    },
    /// Decode one payload (hex) into the readings the service would publish.
    Decode {
        /// The profile whose `<profile>.js` decodes.
        #[arg(long)]
        profile: String,
        /// The frame's FPort (1..=223 for application data).
        #[arg(long)]
        fport: u8,
        /// The FRMPayload, hex (spaces allowed).
        hex: String,
        /// Where the profile and its codec script are.
        #[arg(long, default_value = "profiles")]
        profiles_dir: PathBuf,
        /// Print the codec's own output (data, warnings, errors) as JSON
        /// instead of readings.
        #[arg(long)]
        json: bool,
        /// The device's variables, a JSON object (the codec's `input.variables`).
        #[arg(long)]
        variables: Option<String>,
        /// The reception time given to the codec (`input.recvTime`), RFC 3339; default now.
        #[arg(long)]
        recv_time: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Turn a bought sensor's entry into a profile: a TTN device-repository
    /// device YAML (or its codec YAML), or a ChirpStack device-profiles
    /// device TOML. Writes <NAME>.yaml (resources typed from the codec's
    /// examples), <NAME>.js and <NAME>.examples.yaml, then runs the examples.
    Import {
        /// The vendor's entry: `vendor/<v>/<device>.yaml` (TTN) or
        /// `vendors/<v>/devices/<device>.toml` (ChirpStack).
        entry: PathBuf,
        /// Where profiles are (`Devices.ProfilesDir`).
        #[arg(long, default_value = "profiles")]
        out: PathBuf,
        /// The profile's name (default: <Vendor>-<Device>).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Check every record's checksum, the sequence and the SHA-256 chain.
    Verify {
        /// The outbox directory (default: `<Service.DataDir>/outbox` of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Configuration file (YAML), for `Service.DataDir` and the rest.
        #[arg(short, long, env = "DEVICE_LORAWAN_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HandoverCommand {
    /// Offer a signed contract to a provider edge and send it this
    /// service's image (progress on stderr). The service takes the contract
    /// up when it next starts.
    Offer(device_lorawan::handover::operator::OfferArgs),
    /// This edge's contracts, as customer (asking the provider) and as provider.
    Status,
    /// Take the devices back from the provider now (a running customer
    /// service does this by itself when it starts).
    Release {
        /// Only this contract (default: all).
        #[arg(long)]
        id: Option<String>,
    },
    /// Extend a contract from now: the same agreement with a later end,
    /// signed by both edges (a running service goes on with it).
    Renew {
        /// The contract's id.
        #[arg(long)]
        id: String,
        /// How long from now (`30d`, `12h`).
        #[arg(long, value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
    },
    /// End a contract now, signed by both edges: the provider stands down
    /// if it holds the devices and forgets the contract; this edge keeps
    /// the devices as its own.
    Revoke {
        /// The contract's id.
        #[arg(long)]
        id: String,
    },
    /// The settlement receipts this edge keeps (as customer and provider):
    /// what the provider delivered while it held the devices, and the
    /// customer's verdict.
    Receipts,
    /// One receipt file.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Check a receipt offline: both signatures and every device's hash
    /// chain (exits non-zero if one fails).
    Verify {
        /// The receipt (JSON), e.g. from `<DataDir>/handover/customer/receipts/`.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Send as a Semtech UDP packet forwarder to this address.
    #[arg(long, conflicts_with = "mqtt")]
    udp: Option<std::net::SocketAddr>,
    /// Send as a gateway bridge to this MQTT broker (host:port).
    #[arg(long, conflicts_with = "station")]
    mqtt: Option<String>,
    /// Connect as LoRa Basics Station gateways to this LNS (`ws://host:3001`).
    #[arg(long, conflicts_with = "udp")]
    station: Option<String>,
    /// How the MQTT gateways marshal their messages (`--mqtt` only): the
    /// ChirpStack gateway bridge v4's protobuf or JSON, or loraserver v3's JSON.
    #[arg(long, value_enum, default_value = "protobuf")]
    format: WireFormat,
    /// Topic prefix before `gateway/...` (`--mqtt` only; e.g. `eu868/`).
    /// The service must subscribe under it too: `Ingest.Mqtt.Subscriptions`
    /// with `Topic: eu868/gateway/+/event/up`.
    #[arg(long, default_value = "")]
    prefix: String,
    /// How many ABP motes (their keys derive from `--seed`).
    #[arg(long, default_value_t = 3)]
    devices: usize,
    /// How many gateways hear every mote (each with its own RSSI and SNR).
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Uplinks per second, all motes together (each heard by every gateway).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Stop after this long (`60s`, `5m`); with neither this nor `--frames`,
    /// run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many uplinks, all motes together.
    #[arg(long)]
    frames: Option<u64>,
    /// The motes' keys, DevEUIs and payloads derive from it: the same seed
    /// gives the same motes (and `--write-devices` their devices file).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability (0 to 1) that an uplink's MIC is corrupted.
    #[arg(long, default_value_t = 0.0)]
    bad_mic: f64,
    /// Probability (0 to 1), per uplink, of also sending an earlier frame of
    /// the same mote again (a replay the service must refuse).
    #[arg(long, default_value_t = 0.0)]
    replay: f64,
    /// Probability (0 to 1), per uplink, of a gateway also sending bytes
    /// that are not a LoRaWAN frame.
    #[arg(long, default_value_t = 0.0)]
    garbage: f64,
    /// Probability (0 to 1), per uplink, that the first gateway forwards
    /// its reception twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Each mote reboots after this many of its uplinks: its counter goes
    /// back to 0 (the service sees a counter reset).
    #[arg(long)]
    reboot_every: Option<u32>,
    /// Counter of each mote's first frame.
    #[arg(long, default_value_t = 0)]
    start_fcnt: u32,
    /// Send confirmed uplinks (each asks for an ACK downlink).
    #[arg(long)]
    confirmed: bool,
    /// The ABP motes are class C: they also take downlinks sent at any
    /// time on their RX2 (declare them `class: C` in the devices file).
    #[arg(long)]
    class_c: bool,
    /// Gateways refuse RX1 transmissions, so downlinks must fall back to RX2.
    #[arg(long)]
    refuse_rx1: bool,
    /// After the last uplink, keep taking downlinks this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    linger: Duration,
    /// Write the simulated devices (with keys, mode 0600) to this file and exit.
    #[arg(long)]
    write_devices: Option<PathBuf>,
    /// The motes' RECEIVE_DELAY1 in seconds (default: EU868's 1).
    #[arg(long)]
    rx1_delay: Option<u8>,
    /// The motes' RX1 data-rate offset (default 0).
    #[arg(long)]
    rx1_dr_offset: Option<u8>,
    /// The motes' RX2 channel in Hz (default: EU868's 869525000).
    #[arg(long)]
    rx2_frequency: Option<u32>,
    /// The motes' RX2 data rate (default: their region's).
    #[arg(long, value_parser = parse_data_rate)]
    rx2_data_rate: Option<device_lorawan::lorawan::DataRate>,
    /// The motes' band plan (EU868, US915, AU915, AS923, AS923-2, ...): their
    /// channels, data rates and windows; written as each device's `region`.
    #[arg(long, value_parser = parse_region)]
    region: Option<device_lorawan::lorawan::region::RegionName>,
    /// OTAA motes besides the ABP ones: they join first (and after a reboot).
    #[arg(long, default_value_t = 0)]
    otaa: usize,
    /// The OTAA motes' LoRaWAN version: 1.0.2, 1.0.3 (random DevNonces) or
    /// 1.0.4 (counted).
    #[arg(long, default_value = "1.0.3", value_parser = parse_mac_version)]
    mac_version: device_lorawan::lorawan::region::MacVersionName,
    /// The motes run ADR as LMIC does (`--adr false`: fixed rates in turn).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    adr: bool,
    /// The data rate index the motes start at (default: the region's fastest 125 kHz one).
    #[arg(long)]
    start_dr: Option<u8>,
    /// Each mote's SNR at the nearest gateway, dB, comma-separated, cycled (default 9.5).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    link_snr: Vec<f32>,
    /// Every k-th frame of a mote asks LinkCheckReq.
    #[arg(long)]
    link_check_every: Option<u32>,
    /// Every k-th frame of a mote asks DeviceTimeReq.
    #[arg(long)]
    device_time_every: Option<u32>,
    /// Gateways report their GPS time of each uplink.
    #[arg(long)]
    gateway_time: bool,
}

fn parse_mac_version(s: &str) -> Result<device_lorawan::lorawan::region::MacVersionName, String> {
    serde_yaml_ng::from_str(&format!("\"{s}\""))
        .map_err(|_| format!("{s}: want 1.0.2, 1.0.3 or 1.0.4"))
}

fn parse_region(s: &str) -> Result<device_lorawan::lorawan::region::RegionName, String> {
    serde_yaml_ng::from_str(s).map_err(|_| {
        format!("{s}: not a region (EU868, US915, AU915, AS923, AS923-2, IN865, KR920, ...)")
    })
}

fn parse_data_rate(s: &str) -> Result<device_lorawan::lorawan::DataRate, String> {
    device_lorawan::lorawan::DataRate::parse(s)
        .ok_or_else(|| format!("{s}: not a LoRa data rate like SF9BW125"))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// `dir` if given, else `<Service.DataDir>/<sub>` of the configuration.
fn data_path(
    dir: Option<PathBuf>,
    config: Option<&std::path::Path>,
    sub: &str,
) -> anyhow::Result<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => Ok(Config::load(config)?.service.data_dir.join(sub)),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run { config } => {
            let config = Config::load(config.as_deref())?;
            device_lorawan::service::logging::init(&config.log.level, config.log.format);
            let vars: Vec<String> = std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect();
            for warning in Config::unknown_env(vars.iter().map(String::as_str)) {
                tracing::warn!("{warning}");
            }
            let registry = service::load_registry(&config)?;
            let sink: Box<dyn sink::Sink> = match config.readings.json_lines.as_str() {
                "-" => Box::new(sink::JsonLines::new(std::io::LineWriter::new(
                    std::io::stdout(),
                ))),
                "" => Box::new(sink::Discard),
                path => Box::new(sink::JsonLines::new(std::io::LineWriter::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| anyhow::anyhow!("opening Readings.JsonLines {path}: {e}"))?,
                ))),
            };
            let parts = service::Parts {
                registry,
                sink,
                metrics: Arc::new(Metrics::default()),
            };
            let (bound, handle) =
                service::start(Arc::new(config), parts, shutdown_signal()).await?;
            tracing::info!(api = %bound.api, udp = ?bound.udp, "device-lorawan started");
            tokio::spawn(service::settle::after(std::time::Duration::from_secs(2)));
            handle.await?
        }
        Command::Simulate(a) => simulate(a).await,
        Command::Keygen { dir, config } => {
            let dir = data_path(dir, config.as_deref(), "identity")?;
            let id = device_lorawan::handover::identity::Identity::create(&dir)?;
            println!("identity {}", dir.display());
            println!("public-key {}", id.public().to_hex());
            Ok(())
        }
        Command::Handover { command, config } => {
            use device_lorawan::handover::operator;
            if let HandoverCommand::Receipt {
                command: ReceiptCommand::Verify { file },
            } = &command
            {
                // Offline: no configuration needed.
                print!("{}", operator::verify_receipt(file)?);
                return Ok(());
            }
            let config = Config::load(config.as_deref())?;
            match command {
                HandoverCommand::Offer(args) => {
                    operator::offer(&config, args).await?;
                }
                HandoverCommand::Status => print!("{}", operator::status(&config).await?),
                HandoverCommand::Release { id } => {
                    print!("{}", operator::release(&config, id.as_deref()).await?)
                }
                HandoverCommand::Receipts => print!("{}", operator::receipts(&config)?),
                HandoverCommand::Renew { id, valid_for } => {
                    print!("{}", operator::renew(&config, &id, valid_for).await?)
                }
                HandoverCommand::Revoke { id } => {
                    print!("{}", operator::revoke(&config, &id).await?)
                }
                HandoverCommand::Receipt { .. } => unreachable!("answered above"),
            }
            Ok(())
        }
        Command::Market { command, config } => match command {
            MarketCommand::Verify { file, key } => {
                print!(
                    "{}",
                    device_lorawan::market::cli::verify(&file, key.as_deref())?
                );
                Ok(())
            }
            MarketCommand::Serve => {
                let config = Config::load(config.as_deref())?;
                device_lorawan::service::logging::init(&config.log.level, config.log.format);
                device_lorawan::market::cli::serve(&config).await
            }
        },
        Command::Package { out, config } => {
            let config = Config::load(config.as_deref())?;
            let p = device_lorawan::image::package::package(&config, &out)?;
            // Kept by content in the local store too, ready to hand over.
            let store = device_lorawan::image::store::BlobStore::open(
                &config.service.data_dir.join("images"),
            )?;
            let digest = device_lorawan::image::store::Digest::parse(&p.digest)?;
            store.put_file(&out, &digest)?;
            println!("image {}", out.display());
            println!("stored {}", store.path(&digest).display());
            println!("digest {}", p.digest);
            println!("size {}", p.size);
            println!("cid {}", p.cid);
            println!("manifest {}", p.manifest_digest);
            println!("config {}", p.config_digest);
            Ok(())
        }
        Command::Profile {
            command: ProfileCommand::Import { entry, out, name },
        } => {
            let done = device_lorawan::codec::import::import(&entry, &out, name.as_deref())?;
            for f in &done.files {
                println!("wrote {}", f.display());
            }
            let mut stdout = std::io::stdout().lock();
            if !device_lorawan::cli::codec::test(&out, &done.name, &mut stdout)? {
                anyhow::bail!(
                    "profile {}: an example of the vendor's codec failed (the files are written)",
                    done.name
                );
            }
            println!(
                "profile {}: give devices `profile: {}` and `codec: javascript`",
                done.name, done.name
            );
            Ok(())
        }
        Command::Codec { command } => {
            let mut out = std::io::stdout().lock();
            match command {
                CodecCommand::Test {
                    target,
                    profiles_dir,
                } => {
                    let path = PathBuf::from(&target);
                    let passed = if path.exists() {
                        device_lorawan::cli::codec::test_fixtures(&path, &mut out)?
                    } else {
                        device_lorawan::cli::codec::test(&profiles_dir, &target, &mut out)?
                    };
                    if !passed {
                        anyhow::bail!("codec {target}: an example failed");
                    }
                    Ok(())
                }
                CodecCommand::Decode {
                    profile,
                    fport,
                    hex,
                    profiles_dir,
                    json,
                    variables,
                    recv_time,
                } => device_lorawan::cli::codec::decode(
                    &profiles_dir,
                    &profile,
                    fport,
                    &hex,
                    &device_lorawan::cli::codec::DecodeOptions {
                        json,
                        variables,
                        recv_time,
                    },
                    &mut out,
                ),
            }
        }
        Command::Journal {
            command: JournalCommand::Verify { dir, config },
        } => {
            let dir = data_path(dir, config.as_deref(), "outbox")?;
            let v = device_lorawan::store::outbox::verify(&dir)?;
            println!(
                "outbox {}: intact, {} records from #{}; chain anchor {}, head {}",
                dir.display(),
                v.records,
                v.first_seq,
                v.anchor,
                v.head
            );
            Ok(())
        }
        Command::SketchSettings {
            device,
            devices,
            config,
        } => {
            let config = Config::load(config.as_deref())?;
            let path = devices.unwrap_or(config.devices.file.clone());
            let entries = device_lorawan::devices::load(&path)?;
            let e = entries
                .iter()
                .find(|e| e.name == device)
                .ok_or_else(|| anyhow::anyhow!("no device {device} in {}", path.display()))?;
            print!(
                "{}",
                device_lorawan::cli::sketch::settings_h(e, config.rx_defaults())?
            );
            Ok(())
        }
        Command::Demo {
            duration,
            devices,
            gateways,
            rate,
            station,
        } => {
            device_lorawan::service::logging::init("warn", LogFormat::Text);
            demo::run(demo::DemoOptions {
                duration,
                devices,
                gateways,
                rate,
                station,
            })
            .await
        }
    }
}

async fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    device_lorawan::service::logging::init("info", LogFormat::Text);
    let rx_windows = device_lorawan::devices::RxWindows {
        rx1_delay: a.rx1_delay,
        rx1_dr_offset: a.rx1_dr_offset,
        rx2_frequency: a.rx2_frequency,
        rx2_data_rate: a.rx2_data_rate,
    };
    if let Some(path) = &a.write_devices {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut entries = sim::mote::entries(a.devices, a.seed);
        for e in &mut entries {
            e.rx_windows = rx_windows;
            e.region = a.region;
        }
        for mut e in sim::mote::otaa_entries(a.otaa, a.seed, a.mac_version) {
            e.region = a.region;
            entries.push(e);
        }
        let text = sim::mote::devices_yaml(&entries);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        println!(
            "wrote {} simulated devices to {}",
            a.devices + a.otaa,
            path.display()
        );
        return Ok(());
    }
    let target = match (a.udp, a.mqtt) {
        _ if a.station.is_some() => Target::Station(a.station.clone().expect("guarded")),
        (Some(addr), _) => Target::Udp(addr),
        (None, Some(hp)) => {
            let (host, port) = hp
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("--mqtt wants host:port"))?;
            Target::Mqtt {
                host: host.into(),
                port: port.parse()?,
                format: a.format,
                prefix: a.prefix,
            }
        }
        (None, None) => Target::Udp("127.0.0.1:1700".parse()?),
    };
    let adr = a.adr;
    let opts = SimOptions {
        devices: a.devices,
        gateways: a.gateways,
        rate: a.rate,
        frames: a.frames,
        duration: a.duration.or(if a.frames.is_none() {
            Some(Duration::from_secs(10))
        } else {
            None
        }),
        seed: a.seed,
        faults: Faults {
            bad_mic: a.bad_mic,
            replay: a.replay,
            garbage: a.garbage,
            duplicate: a.duplicate,
        },
        reboot_every: a.reboot_every,
        start_fcnt: a.start_fcnt,
        confirmed: a.confirmed,
        refuse_rx1: a.refuse_rx1,
        linger: a.linger,
        rx_windows,
        region: a.region.unwrap_or_default(),
        otaa_devices: a.otaa,
        mac_version: a.mac_version,
        lost_join_accepts: 0,
        otaa_rejoin_every: a.reboot_every,
        adr: a.adr,
        start_dr: a.start_dr,
        link_snr: a.link_snr,
        refuse_dr_above: None,
        link_check_every: a.link_check_every,
        device_time_every: a.device_time_every,
        gateway_time: a.gateway_time,
        class_a_wait: Duration::ZERO,
        class_c: a.class_c,
    };
    let report = sim::run(target, opts, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    println!(
        "sent {} good frames ({} copies); injected {} bad MIC, {} replays, {} garbage, {} duplicates",
        report.expected.len(),
        report.copies,
        report.bad_mic,
        report.replays,
        report.garbage,
        report.duplicates
    );
    for j in &report.joins {
        println!(
            "{} joined: DevAddr {}, JoinAccept {} µs after the JoinRequest at {} Hz {}",
            j.device, j.dev_addr, j.delay_us, j.frequency, j.datr
        );
    }
    for d in &report.downlinks {
        println!(
            "downlink to {}: FCntDown {}, ack {}, port {:?}, payload {}, {} µs after the uplink at {} Hz {}; interval now {} s",
            d.device, d.fcnt, d.ack, d.fport, hex::encode(&d.payload), d.delay_us, d.frequency, d.datr, d.interval_s
        );
    }
    for t in &report.told {
        println!("{} was told {:?}", t.device, t.what);
    }
    if adr {
        for m in &report.motes {
            println!(
                "{}: DR{} at TX power {} (NbTrans {}); LinkADRReq taken {}, refused {}; stepped down {} times",
                m.device, m.dr, m.tx_power, m.nb_trans, m.adr_taken, m.adr_refused, m.steps_down
            );
        }
        println!(
            "time on air {:.1} s; {} frames heard by no gateway",
            report.airtime.as_secs_f64(),
            report.lost_on_air
        );
    }
    if report.refused + report.downlinks_dropped + report.downlinks_missed > 0 {
        println!(
            "gateways refused {} transmissions; motes dropped {} downlinks and missed {} sent outside their receive windows",
            report.refused, report.downlinks_dropped, report.downlinks_missed
        );
    }
    Ok(())
}
