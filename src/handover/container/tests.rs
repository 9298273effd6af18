//! Tests of the container takeover: its data directory and a tampered image.
use super::*;
use crate::config::HandoverConfig;
use crate::handover::pb::Counter;
use crate::handover::pb::DeviceSession;
use crate::image::package::DATA;

const EUI: u64 = 0x70b3_d57e_d000_0001;

fn session() -> DeviceSession {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"));
    let profiles = crate::codec::profile::load_dir(dir).unwrap();
    DeviceSession {
        name: "bridge-tilt-1".into(),
        dev_eui: EUI,
        dev_addr: 0x2601_1bda,
        nwk_s_key: vec![1; 16],
        app_s_key: vec![2; 16],
        profile_json: serde_json::to_string(&profiles["Dragino-LPP-Mote"]).unwrap(),
        codec: "cayenne-lpp".into(),
        fcnt_policy: "reset-tolerant".into(),
        counter: Some(Counter {
            dev_eui: EUI,
            epoch: 2,
            fcnt: Some(40),
            fcnt_down: 7,
        }),
        rx_windows: Some(crate::handover::pb::RxWindows {
            rx2_data_rate: Some("SF9BW125".into()),
            ..Default::default()
        }),
        region: String::new(),
        otaa: None,
        mac_state: serde_json::to_string(&mac_state()).unwrap(),
    }
}

/// A device's MAC state as the customer synced it: it acknowledged a
/// LinkADRReq to TX power 3.
fn mac_state() -> crate::lorawan::mac::MacState {
    let mut s = crate::lorawan::mac::MacState::new(
        2,
        crate::lorawan::mac::RxParams {
            rx1_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 3,
            rx2_frequency: 869_525_000,
        },
        1_700_000_000,
    );
    s.tx_power = 3;
    s
}

#[test]
fn the_data_dir_is_what_the_service_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.service.name = "edge-b".into();
    config.ingest.mqtt.enabled = true;
    config.ingest.mqtt.password = Some("broker-secret".into());
    config.handover.listen = "127.0.0.1:59996".into();
    config.handover.takeover = crate::config::TakeoverMode::Container;
    let api: SocketAddr = "127.0.0.1:41234".parse().unwrap();
    let eui = Eui64::from_u64(EUI);
    let after = FcntState {
        last: Some(52),
        epoch: 2,
    };
    write_data_dir(
        dir.path(),
        &config,
        "bridge-1",
        api,
        &[session()],
        &[(eui, after)],
    )
    .unwrap();

    let c = Config::load(Some(&dir.path().join("configuration.yaml"))).unwrap();
    assert_eq!(c.service.name, "edge-b-bridge-1");
    assert_eq!(c.service.api_bind, api);
    assert_eq!(c.service.data_dir, Path::new(DATA));
    assert_eq!(c.ingest.mqtt.client_id, "edge-b-ingest-bridge-1");
    assert_eq!(c.edgex.message_bus.client_id, "edge-b-bus-bridge-1");
    assert_ne!(
        c.edgex.message_bus.client_id,
        config.edgex.message_bus.client_id
    );
    assert!(!c.ingest.udp.enabled && c.ingest.mqtt.enabled);
    assert_eq!(c.ingest.mqtt.password.as_deref(), Some("broker-secret"));
    assert_eq!(
        c.handover,
        HandoverConfig {
            resume_after: format!("{DATA}/resume.json"),
            ..HandoverConfig::default()
        },
        "no handover roles; its devices held until the provider stands down"
    );
    assert!(
        c.ingest.mqtt.clean_session,
        "no broker session from an earlier takeover"
    );
    assert_eq!(c.readings.json_lines, "-");
    config.readings.json_lines = "/srv/edge/readings.jsonl".into();
    let c = container_config(&config, "bridge-1", api);
    assert_eq!(c.readings.json_lines, format!("{DATA}/readings.jsonl"));

    use std::os::unix::fs::PermissionsExt;
    for f in ["configuration.yaml", "devices.yaml"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} holds secrets");
    }
    let devices = crate::devices::load(&dir.path().join("devices.yaml")).unwrap();
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!((d.name.as_str(), d.dev_eui), ("bridge-tilt-1", eui));
    assert_eq!(d.dev_addr.unwrap().0, 0x2601_1bda);
    assert_eq!(d.nwk_s_key.unwrap().expose(), &[1; 16]);
    assert_eq!(d.app_s_key.unwrap().expose(), &[2; 16]);
    assert_eq!(
        d.rx_windows.rx2_data_rate,
        crate::lorawan::DataRate::parse("SF9BW125"),
        "the device's receive windows travel with it"
    );
    let profiles = crate::codec::profile::load_dir(&dir.path().join("profiles")).unwrap();
    assert_eq!(
        serde_json::to_string(&profiles[&d.profile]).unwrap(),
        session().profile_json,
        "the synced profile, unchanged"
    );
    let counters = crate::store::counters::CounterStore::open(dir.path()).unwrap();
    assert_eq!(counters.get(eui), after, "starts after what was delivered");
    assert_eq!(counters.down(eui), 7, "the synced next FCntDown");
    let macs = crate::store::state_log::StateLog::<crate::lorawan::mac::MacState>::open(dir.path())
        .unwrap();
    assert_eq!(
        macs.find(eui),
        Some(&mac_state()),
        "the MAC state the customer synced"
    );
}

#[test]
fn a_bad_session_is_refused_without_its_keys() {
    let mut s = session();
    s.nwk_s_key = vec![0xab; 15];
    let dir = tempfile::tempdir().unwrap();
    let err = write_data_dir(
        dir.path(),
        &Config::default(),
        "bridge-1",
        "127.0.0.1:1".parse().unwrap(),
        &[s],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("NwkSKey is not 16 bytes"), "{err}");
    assert!(!err.contains("abab"), "no key material: {err}");
}

fn tar_with(manifest: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    for (path, body) in [("blobs/sha256/00", "x"), ("manifest.json", manifest)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, body.as_bytes()).unwrap();
    }
    b.finish().unwrap();
    f
}

#[test]
fn the_image_id_is_the_config_digest_of_the_manifest() {
    let hex = "ab".repeat(32);
    let ok = tar_with(&format!(
        r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":[]}}]"#
    ));
    assert_eq!(image_id(ok.path()).unwrap(), format!("sha256:{hex}"));
    for bad in [r#"[]"#, r#"[{"Config":"../../etc/passwd"}]"#, "{"] {
        let e = image_id(tar_with(bad).path()).unwrap_err();
        assert!(e.to_string().contains("manifest.json"), "{bad}: {e}");
    }
}

/// The pipeline behind an [`InProcess`]: answers every request and
/// notes what it was asked.
fn pipeline() -> (InProcess, Arc<Mutex<Vec<&'static str>>>) {
    use crate::control::mailbox::Control;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            let what = match c {
                Control::Adopt { done, .. } => {
                    let _ = done.send(Ok(()));
                    "adopt"
                }
                Control::Resume { done, .. } => {
                    let _ = done.send(Vec::new());
                    "resume"
                }
                Control::Standby { done, .. } => {
                    let _ = done.send(());
                    "standby"
                }
                Control::AnswerJoins { answer, done, .. } => {
                    let _ = done.send(());
                    if answer {
                        "answer-joins"
                    } else {
                        "leave-joins"
                    }
                }
                Control::JoinStates { reply, .. } => {
                    let _ = reply.send(Vec::new());
                    "join-states"
                }
                Control::MacStates { reply, .. } => {
                    let _ = reply.send(Vec::new());
                    "mac-states"
                }
                _ => "other",
            };
            noted.lock().unwrap().push(what);
        }
    });
    let inner = InProcess {
        edgex: None,
        bus: None,
        control: tx,
        delivered: Arc::new(crate::edgex::delivered::Delivered::new(None)),
    };
    (inner, seen)
}

#[tokio::test]
async fn a_tampered_image_never_reaches_the_engine_and_this_edge_goes_on() {
    use crate::handover::contract::*;
    let dir = tempfile::tempdir().unwrap();
    // An engine socket that counts who comes.
    let socket = dir.path().join("engine.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let contacted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = contacted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            count.fetch_add(1, Relaxed);
        }
    });
    let mut config = Config::default();
    config.handover.engine = format!("unix://{}", socket.display());
    let metrics = Arc::new(Metrics::default());
    let (inner, seen) = pipeline();
    let c = Container::new(inner, Arc::new(config), dir.path(), metrics.clone()).unwrap();

    // The contract names the good image; the store holds other bytes
    // under its name.
    let digest = Digest::of(b"the customer's image");
    let store = BlobStore::open(&dir.path().join("images")).unwrap();
    std::fs::write(store.path(&digest), b"a tampered image").unwrap();
    let party = |id: &str| Party {
        id: id.into(),
        public_key: String::new(),
        address: "127.0.0.1:1".into(),
    };
    let signed = SignedContract {
        contract: Contract {
            id: "bridge-1".into(),
            customer: party("edge-a"),
            provider: party("edge-b"),
            image: ImageRef {
                digest: digest.to_string(),
                cid: String::new(),
                size: 16,
            },
            devices: vec![Eui64::from_u64(EUI).to_string()],
            activation: Activation {
                heartbeat_ms: 1000,
                missed_heartbeats: 3,
            },
            resources: Resources {
                memory_bytes: 64 << 20,
                cpu_millis: 500,
            },
            not_before: 0,
            not_after: u64::MAX,
            at_expiry: Default::default(),
            rank: 0,
        },
        customer_signature: None,
        provider_signature: None,
    };
    let sessions = [session()];
    let handed = Handed {
        contract: &signed,
        sessions: &sessions,
    };
    c.activate(handed, &[]).await.unwrap();
    let failed = || metrics.handover_container_failures.load(Relaxed);
    for _ in 0..500 {
        if failed() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(failed(), 1, "the start failed, counted");
    c.stand_down(handed).await.unwrap();
    assert_eq!(contacted.load(Relaxed), 0, "the engine never saw it");
    assert_eq!(c.container("bridge-1"), None);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "leave-joins",  // the container would answer joins...
            "resume",       // ...while this edge publishes
            "answer-joins", // the start failed: this edge answers them
            "answer-joins", // the hand-back
            "standby"
        ],
        "this edge published until the hand-back, answering joins once the container failed"
    );
}
