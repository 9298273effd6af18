"""A LoRa Basics Station, as far as its LNS protocol goes, written from
Semtech's specification (docs "The LNS Protocol"), independent of the Rust
code: discovery on /router-info, the traffic connection, `version`,
uplinks as `updf`/`jreq` built from raw PHYPayloads the way a station's
lora.c splits them (DevAddr and MIC as signed 32-bit integers, FPort -1
without a port), `dnmsg` answered by `dntxed`, `timesync`. Each message has the shape
station 2.0.6 really sends (tests/peers/recorded/): `dntxed` with both
`seqno` and `diid`, an integer `txtime` in `timesync`, and `gpstime` as a
station with PPS but no GPS fix sends it (0, then µs that are not GPS
time) unless a line gives one.

    python3 station_peer.py <ws|wss>://host:port <gateway-eui> [--ca FILE]
        [--cert FILE --key FILE] [--token T] [--linger S]

stdin: JSON lines {"phy": hex, "DR": n, "Freq": hz, "xtime": n, "rssi": n,
"snr": x, "gpstime": n} or {"raw": text} (sent as is). stdout: JSON lines, one per event:
{"event": "router-info", ...}, {"event": "router_config", ...},
{"event": "dnmsg", ...}, {"event": "timesync-sent", "txtime": n},
{"event": "timesync", ...}, {"event": "closed", "code": n},
{"event": "refused", "status": n}.
"""
import json
import ssl
import struct
import sys
import threading
import time

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def out(event, **kw):
    print(json.dumps({"event": event, **kw}), flush=True)


def eui_text(n):
    return "-".join("%02X" % b for b in n.to_bytes(8, "big"))


STARTED = time.monotonic()
SENT_UPLINKS = [0]


def pps_gpstime():
    """What station 2.0.6 with PPS but no GPS fix puts in `gpstime` (see
    tests/peers/recorded/): 0 for its first uplink, then a count of µs
    that is not GPS time."""
    SENT_UPLINKS[0] += 1
    if SENT_UPLINKS[0] == 1:
        return 0
    return 1_000_000 + int((time.monotonic() - STARTED) * 1e6) % 1_000_000


def frame_message(phy, up):
    """updf or jreq for PHYPayload bytes `phy` (lora.c's field split)."""
    mhdr = phy[0]
    ftype = mhdr >> 5
    gpstime = up["gpstime"] if "gpstime" in up else pps_gpstime()
    info = {"DR": up["DR"], "Freq": up["Freq"], "RefTime": time.time(),
            "upinfo": {"rctx": up.get("rctx", 0), "xtime": up["xtime"],
                       "gpstime": gpstime, "fts": -1,
                       "rssi": up.get("rssi", -60), "snr": up.get("snr", 7.0),
                       "rxtime": time.time()}}
    if ftype == 0:  # JoinRequest: MHDR | JoinEUI | DevEUI | DevNonce | MIC
        join = int.from_bytes(phy[1:9], "little")
        dev = int.from_bytes(phy[9:17], "little")
        nonce = int.from_bytes(phy[17:19], "little")
        mic = struct.unpack("<i", phy[19:23])[0]
        return {"msgtype": "jreq", "MHdr": mhdr, "JoinEui": eui_text(join),
                "DevEui": eui_text(dev), "DevNonce": nonce, "MIC": mic, **info}
    devaddr = struct.unpack("<i", phy[1:5])[0]
    fctrl = phy[5]
    fcnt = int.from_bytes(phy[6:8], "little")
    foptslen = fctrl & 0x0F
    portoff = 8 + foptslen
    n = len(phy)
    port = -1 if portoff == n - 4 else phy[portoff]
    payload = phy[portoff + 1:n - 4] if port >= 0 else b""
    mic = struct.unpack("<i", phy[n - 4:])[0]
    return {"msgtype": "updf", "MHdr": mhdr, "DevAddr": devaddr, "FCtrl": fctrl,
            "FCnt": fcnt, "FOpts": phy[8:portoff].hex(), "FPort": port,
            "FRMPayload": payload.hex(), "MIC": mic, **info}


def tls_context(args):
    if "--ca" not in args:
        return None
    ctx = ssl.create_default_context(cafile=args[args.index("--ca") + 1])
    ctx.check_hostname = False
    # TLS 1.2, as a station on mbedTLS 2 speaks it; and because the sync
    # websockets client reads one SSL object in a thread while it writes
    # the upgrade request in another, which races with TLS 1.3's
    # post-handshake session tickets (seen as a 10 s hang in about one run
    # in ten, the request never reaching the server).
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if "--cert" in args:
        ctx.load_cert_chain(args[args.index("--cert") + 1], args[args.index("--key") + 1])
    return ctx


def main():
    base, gw = sys.argv[1], int(sys.argv[2], 16)
    args = sys.argv[3:]
    ctx = tls_context(args)
    linger = float(args[args.index("--linger") + 1]) if "--linger" in args else 2.0
    headers = {}
    if "--token" in args:
        headers["Authorization"] = args[args.index("--token") + 1]
    try:
        with connect(base + "/router-info", ssl=ctx, open_timeout=10) as ws:
            ws.send(json.dumps({"router": eui_text(gw)}))
            info = json.loads(ws.recv(timeout=10))
    except InvalidStatus as e:
        out("refused", status=e.response.status_code)
        return
    except Exception as e:  # TLS refusals and the like
        out("refused", status=0, error=str(e))
        return
    out("router-info", **info)
    if "error" in info:
        return
    try:
        ws = connect(info["uri"], ssl=ctx, additional_headers=headers, open_timeout=10,
                     max_size=2**20)
    except InvalidStatus as e:
        out("refused", status=e.response.status_code)
        return
    except Exception as e:
        out("refused", status=0, error=str(e))
        return
    ws.send(json.dumps({"msgtype": "version", "station": "2.0.6(peer)", "firmware": None,
                        "package": None, "model": "station_peer.py", "protocol": 2,
                        "features": "rmtsh"}))
    config = json.loads(ws.recv(timeout=10))
    out("router_config", **config)
    done = threading.Event()

    def reader():
        try:
            while not done.is_set():
                try:
                    m = json.loads(ws.recv(timeout=0.2))
                except TimeoutError:
                    continue
                out(m.get("msgtype", "?"), **m)
                if m.get("msgtype") == "dnmsg":
                    # As station 2.0.6 sends it: both seqno and diid, the
                    # window's DR and frequency, txtime in float seconds.
                    rx1 = "RX1DR" in m
                    ws.send(json.dumps({"msgtype": "dntxed", "seqno": m["diid"],
                                        "diid": m["diid"],
                                        "DR": m["RX1DR"] if rx1 else m["RX2DR"],
                                        "Freq": m["RX1Freq"] if rx1 else m["RX2Freq"],
                                        "DevEui": m["DevEui"], "rctx": m.get("rctx", 0),
                                        "xtime": m.get("xtime", 0) + m.get("RxDelay", 0) * 1_000_000,
                                        "txtime": round(time.monotonic() - STARTED, 6),
                                        "gpstime": 0}))
        except ConnectionClosed as e:
            out("closed", code=e.rcvd.code if e.rcvd else None)
    t = threading.Thread(target=reader)
    t.start()
    # The station's µs clock (ustime), an integer as the station sends it.
    txtime = int((time.monotonic() - STARTED) * 1e6) + 1_000_000_000
    out("timesync-sent", txtime=txtime)
    ws.send(json.dumps({"msgtype": "timesync", "txtime": txtime}))
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        up = json.loads(line)
        try:
            if "raw" in up:
                ws.send(up["raw"])
            else:
                ws.send(json.dumps(frame_message(bytes.fromhex(up["phy"]), up)))
        except ConnectionClosed:
            break
    time.sleep(linger)
    done.set()
    t.join()
    ws.close()


if __name__ == "__main__":
    main()
