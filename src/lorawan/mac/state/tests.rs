use super::*;

const RX: RxParams = RxParams {
    rx1_delay: 1,
    rx1_dr_offset: 0,
    rx2_dr: 0,
    rx2_frequency: 869_525_000,
};

fn want() -> Wanted {
    Wanted {
        adr: true,
        installation_margin: 10.0,
        max_dr: 5,
        max_tx_power: 7,
        channel_masks: vec![(6, 0x0007)],
        rx: RX,
        dev_status_every: None,
        extra_channels: Vec::new(),
    }
}

fn up(fcnt: u32, dr: u8, snr: f32, commands: &[MacCommand]) -> UplinkMac<'_> {
    UplinkMac {
        fcnt,
        adr: true,
        adr_ack_req: false,
        dr: Some((dr, 12 - dr)),
        max_snr: snr,
        gateways: 2,
        commands,
        now: 1_000,
        gps_time_ns: 0,
    }
}

fn adr_req(d: &Decision) -> Option<(u8, u8, u8)> {
    d.commands.iter().find_map(|c| match *c {
        DownCommand::LinkAdrReq {
            data_rate,
            tx_power,
            nb_trans,
            ..
        } => Some((data_rate, tx_power, nb_trans)),
        _ => None,
    })
}

const ACK: MacCommand = MacCommand::LinkAdrAns {
    power_ack: true,
    data_rate_ack: true,
    channel_mask_ack: true,
};

#[test]
fn a_near_device_is_moved_up_once_it_answers() {
    let mut s = MacState::new(0, RX, 0);
    let d = s.on_uplink(&up(0, 0, 9.5, &[]), &want());
    assert_eq!(adr_req(&d), Some((5, 1, 1)));
    assert!(d.must_send);
    // Nothing changes until a gateway sent it and the device answered.
    s.on_sent(&d.commands, 0, 1_000);
    let d = s.on_uplink(&up(1, 0, 9.5, &[]), &want());
    assert_eq!(adr_req(&d), None, "pending: not asked again");
    assert_eq!(s.tx_power, 0);
    let d = s.on_uplink(&up(2, 5, 9.5, &[ACK]), &want());
    assert_eq!(
        d.outcomes,
        vec![Outcome::AdrApplied(AdrAsk {
            dr: 5,
            tx_power: 1,
            nb_trans: 1
        })]
    );
    assert_eq!(s.tx_power, 1);
    // DR5 at power 1 heard at 9.5 still has 2 steps: power goes on down.
    assert_eq!(adr_req(&d), Some((5, 3, 1)));
}

#[test]
fn a_far_device_is_left_alone() {
    let mut s = MacState::new(0, RX, 0);
    for f in 0..30 {
        let d = s.on_uplink(&up(f, 0, -12.0, &[]), &want());
        assert_eq!(d, Decision::default(), "frame {f}");
    }
}

#[test]
fn adr_follows_the_device_bit_and_the_setting() {
    let mut s = MacState::new(0, RX, 0);
    let mut u = up(0, 0, 9.5, &[]);
    u.adr = false;
    assert!(s.on_uplink(&u, &want()).commands.is_empty());
    let off = Wanted {
        adr: false,
        ..want()
    };
    assert!(s.on_uplink(&up(1, 0, 9.5, &[]), &off).commands.is_empty());
}

#[test]
fn adrackreq_forces_a_downlink_even_with_nothing_to_say() {
    let mut s = MacState::new(0, RX, 0);
    let mut u = up(70, 0, -12.0, &[]);
    u.adr_ack_req = true;
    let d = s.on_uplink(&u, &want());
    assert!(d.commands.is_empty());
    assert!(d.must_send);
}

#[test]
fn a_refused_request_is_capped_and_backed_off_not_repeated() {
    let mut s = MacState::new(0, RX, 0);
    let d = s.on_uplink(&up(0, 0, 9.5, &[]), &want());
    s.on_sent(&d.commands, 0, 0);
    let nack = MacCommand::LinkAdrAns {
        power_ack: true,
        data_rate_ack: false,
        channel_mask_ack: true,
    };
    let d = s.on_uplink(&up(1, 0, 9.5, &[nack]), &want());
    assert!(matches!(
        d.outcomes[..],
        [Outcome::AdrRefused {
            data_rate: false,
            ..
        }]
    ));
    assert_eq!(adr_req(&d), None, "backing off");
    let mut asked = Vec::new();
    for f in 2..200 {
        let d = s.on_uplink(&up(f, 0, 9.5, &[]), &want());
        if let Some(r) = adr_req(&d) {
            asked.push((f, r));
            s.on_sent(&d.commands, f, 0);
            // Refused again, every time.
            let d = s.on_uplink(&up(f + 1, 0, 9.5, &[nack]), &want());
            assert_eq!(adr_req(&d), None);
        }
    }
    // After a refusal of DR5 the cap is DR4; then DR3 …: never DR5 again,
    // and the waits grow (20, 40, 80 frames).
    assert_eq!(asked.first().map(|a| a.1 .0), Some(4));
    assert!(asked.iter().all(|a| a.1 .0 < 5));
    assert!(asked.len() <= 3, "{asked:?}");
}

#[test]
fn an_unanswered_request_is_asked_again_then_backed_off() {
    let mut s = MacState::new(0, RX, 0);
    let mut sent_at = Vec::new();
    for f in 0..100 {
        let d = s.on_uplink(&up(f, 0, 9.5, &[]), &want());
        if adr_req(&d).is_some() {
            s.on_sent(&d.commands, f, 0);
            sent_at.push(f);
        }
    }
    // Asked at 0, 2, 4 (two frames without an answer each), then quiet for 20.
    assert_eq!(&sent_at[..3], &[0, 2, 4]);
    assert!(sent_at[3] >= 26, "{sent_at:?}");
    assert!(sent_at.len() < 10, "{sent_at:?}");
}

#[test]
fn link_check_and_device_time_are_answered_in_that_window() {
    let mut s = MacState::new(0, RX, 0);
    let mut u = up(
        5,
        3,
        -5.0,
        &[MacCommand::LinkCheckReq, MacCommand::DeviceTimeReq],
    );
    u.adr = false;
    u.gps_time_ns = 1_400_000_000 * 1_000_000_000 + 750_000_000;
    let d = s.on_uplink(&u, &want());
    assert_eq!(
        d.commands,
        vec![
            // SF9 needs -12.5 dB: heard at -5 is 7.5 dB above.
            DownCommand::LinkCheckAns {
                margin: 7,
                gateways: 2
            },
            DownCommand::DeviceTimeAns {
                seconds: 1_400_000_000,
                fraction: 192
            },
        ]
    );
    assert!(d.must_send);
    // Answers are never pending.
    s.on_sent(&d.commands, 5, 0);
    assert_eq!(s.pending, Pending::default());
}

#[test]
fn receive_windows_move_only_when_acknowledged() {
    let mut s = MacState::new(0, RX, 0);
    let w = Wanted {
        adr: false,
        rx: RxParams {
            rx1_delay: 3,
            rx1_dr_offset: 2,
            rx2_dr: 3,
            rx2_frequency: 869_525_000,
        },
        ..want()
    };
    let d = s.on_uplink(&up(0, 0, 0.0, &[]), &w);
    assert_eq!(
        d.commands,
        vec![
            DownCommand::RxParamSetupReq {
                rx1_dr_offset: 2,
                rx2_data_rate: 3,
                frequency: 869_525_000
            },
            DownCommand::RxTimingSetupReq { delay: 3 },
        ]
    );
    s.on_sent(&d.commands, 0, 0);
    assert_eq!(s.rx, RX, "not before the answers");
    let ans = [
        MacCommand::RxParamSetupAns {
            rx1_dr_offset_ack: true,
            rx2_data_rate_ack: true,
            channel_ack: true,
        },
        MacCommand::RxTimingSetupAns,
    ];
    let d = s.on_uplink(&up(1, 0, 0.0, &ans), &w);
    assert!(d.commands.is_empty());
    assert_eq!(s.rx, w.rx);
    // A refused change is not asked again.
    let mut s = MacState::new(0, RX, 0);
    let d = s.on_uplink(&up(0, 0, 0.0, &[]), &w);
    s.on_sent(&d.commands, 0, 0);
    let nack = [MacCommand::RxParamSetupAns {
        rx1_dr_offset_ack: true,
        rx2_data_rate_ack: false,
        channel_ack: true,
    }];
    let d = s.on_uplink(&up(1, 0, 0.0, &nack), &w);
    assert!(!d
        .commands
        .iter()
        .any(|c| matches!(c, DownCommand::RxParamSetupReq { .. })));
    assert_eq!(s.rx.rx2_dr, 0);
}

#[test]
fn dev_status_at_its_interval() {
    let mut s = MacState::new(0, RX, 1_000);
    let w = Wanted {
        adr: false,
        dev_status_every: Some(3_600),
        ..want()
    };
    let at = |f, now, cmds: &'static [MacCommand]| UplinkMac {
        now,
        ..up(f, 0, 0.0, cmds)
    };
    assert!(s.on_uplink(&at(0, 1_000, &[]), &w).commands.is_empty());
    let d = s.on_uplink(&at(1, 4_600, &[]), &w);
    assert_eq!(d.commands, vec![DownCommand::DevStatusReq]);
    s.on_sent(&d.commands, 1, 4_600);
    let ans: &'static [MacCommand] = &[MacCommand::DevStatusAns {
        battery: 200,
        margin: 12,
    }];
    let d = s.on_uplink(&at(2, 4_610, ans), &w);
    assert_eq!(
        d.status,
        Some(DevStatus {
            battery: 200,
            margin: 12
        })
    );
    assert!(d.commands.is_empty(), "next one an hour after the last");
    assert!(s.on_uplink(&at(3, 8_000, &[]), &w).commands.is_empty());
    assert_eq!(
        s.on_uplink(&at(4, 8_200, &[]), &w).commands,
        vec![DownCommand::DevStatusReq]
    );
}

#[test]
fn fit_keeps_answers_and_whole_adr_blocks() {
    let adr = |cntl| DownCommand::LinkAdrReq {
        data_rate: 3,
        tx_power: 0,
        channel_mask: 0xff,
        channel_mask_control: cntl,
        nb_trans: 1,
    };
    let time = DownCommand::DeviceTimeAns {
        seconds: 1,
        fraction: 0,
    };
    let all = [adr(7), adr(0), time, DownCommand::DevStatusReq];
    // 15 bytes of FOpts: the answer (6), then one LinkADRReq would fit
    // but not the block of two: the block is left out.
    assert_eq!(fit(&all, 15), vec![time, DownCommand::DevStatusReq]);
    assert_eq!(
        fit(&all, 64),
        vec![time, adr(7), adr(0), DownCommand::DevStatusReq]
    );
}

#[test]
fn gps_time_of_a_utc_instant() {
    // 2026-01-01T00:00:00Z is 1451174418 s of GPS time (18 leap seconds).
    let unix = 1_767_225_600u64;
    assert_eq!(
        gps_from_unix_ns(unix * 1_000_000_000) / 1_000_000_000,
        1_451_260_818
    );
}

/// A device whose SNR falls 2 dB per TX power step (EU868), taking every
/// LinkADRReq: ADR never moves it below its data rate's floor.
#[test]
fn adr_converges_without_losing_the_link() {
    for base in -14..=10 {
        let mut s = MacState::new(0, RX, 0);
        let (mut dr, mut power) = (0u8, 0u8);
        let mut pending: Option<(u8, u8)> = None;
        for f in 0..200 {
            let snr = base as f32 - 2.0 * f32::from(power);
            let sf = 12 - dr;
            assert!(
                snr >= adr::required_snr(sf),
                "base {base}: DR{dr} power {power} at frame {f}"
            );
            let ans = [ACK];
            let cmds: &[MacCommand] = if pending.take().is_some() { &ans } else { &[] };
            let d = s.on_uplink(&up(f, dr, snr, cmds), &want());
            if let Some((r, p, _)) = adr_req(&d) {
                s.on_sent(&d.commands, f, 0);
                (dr, power) = (r, p);
                pending = Some((r, p));
            }
        }
    }
}

#[test]
fn extra_channels_are_defined_once_and_refusals_not_repeated() {
    let mut s = MacState::new(0, RX, 0);
    s.channels = vec![3]; // from its CFList
    let w = Wanted {
        adr: false,
        extra_channels: vec![
            (3, 867_100_000, 0, 5),
            (4, 867_300_000, 0, 5),
            (5, 867_500_000, 0, 5),
        ],
        ..want()
    };
    let d = s.on_uplink(&up(0, 0, 0.0, &[]), &w);
    let asked: Vec<u8> = d
        .commands
        .iter()
        .filter_map(|c| match c {
            DownCommand::NewChannelReq { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [4, 5], "channel 3 came with the CFList");
    s.on_sent(&d.commands, 0, 0);
    assert!(
        s.on_uplink(&up(1, 0, 0.0, &[]), &w).commands.is_empty(),
        "pending"
    );
    let ans = [
        MacCommand::NewChannelAns {
            data_rate_range_ok: true,
            channel_frequency_ok: true,
        },
        MacCommand::NewChannelAns {
            data_rate_range_ok: true,
            channel_frequency_ok: false,
        },
    ];
    let d = s.on_uplink(&up(2, 0, 0.0, &ans), &w);
    assert_eq!(
        d.outcomes,
        vec![Outcome::ChannelAdded(4), Outcome::ChannelRefused(5)]
    );
    assert!(
        d.commands.is_empty(),
        "nothing left to ask: {:?}",
        d.commands
    );
    assert_eq!(s.channels, [3, 4]);
}

#[test]
fn device_time_trusts_only_a_plausible_gateway_gps_time() {
    use super::{device_time, gps_from_unix_ns, TimeSource};
    let reception = 1_796_523_247_000_000_000u64; // 2026-12-06, Unix ns
    let ours = gps_from_unix_ns(reception);
    // A gateway with a GPS fix: its time, whatever our clock says.
    let fix = ours - 1_500_000;
    assert_eq!(
        device_time(Some(fix), reception),
        (fix, TimeSource::Gateway)
    );
    assert_eq!(device_time(Some(fix), 0), (fix, TimeSource::Gateway));
    // None, zero, µs since a PPS pulse (Basics Station before its fix),
    // a free-running counter, a time past 2100: our clock at reception.
    for bad in [None, Some(0), Some(1_231_621_000), Some(u64::MAX / 2)] {
        assert_eq!(
            device_time(bad, reception),
            (ours, TimeSource::Reception),
            "{bad:?}"
        );
    }
    // 1980-01-06 would have been the answer for a PPS-relative time.
    assert!(ours > 1_261_872_018_000_000_000, "after 2020");
}
