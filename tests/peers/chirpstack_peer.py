"""Gateway-bridge messages built with ChirpStack's own protobuf definitions
(PyPI chirpstack-api): v4 protobuf, v4 JSON (protobuf's JSON mapping, as the
bridge's JSON marshaler writes it), and the legacy v3 fields. One JSON line
per message: {"kind", "payload" (hex), "gateway", "rssi", "snr", "tmst"}.
`downlink`: our DownlinkFrames read, DownlinkTxAcks built; `integration`:
recorded application events decoded; `command`: our commands for ChirpStack's
device queue read (see those branches)."""
import json
import sys

from chirpstack_api import gw
from google.protobuf import json_format


def parsed(line, msg):
    """`msg` read from a stdin line {"kind", "payload" (hex)} as ChirpStack
    reads it: JSON strictly (an unknown or mistyped field fails), or protobuf."""
    t = json.loads(line)
    raw = bytes.fromhex(t["payload"])
    if t["kind"] == "json":
        json_format.Parse(raw.decode(), msg)
    else:
        msg.ParseFromString(raw)
    return msg


if sys.argv[1] == "integration":
    # Application events as ChirpStack's definitions read them: each stdin
    # line the hex of an `integration.UplinkEvent`, each output line its
    # protobuf JSON mapping (what the integration's JSON marshaler writes).
    from chirpstack_api import integration
    for line in sys.stdin:
        ev = integration.UplinkEvent()
        ev.ParseFromString(bytes.fromhex(line.strip()))
        print(json.dumps(json.loads(json_format.MessageToJson(ev)), separators=(",", ":")))
    sys.exit(0)

if sys.argv[1] == "command":
    # Our commands for ChirpStack's device queue, read as its MQTT
    # integration reads them; each output line the command in protobuf's
    # JSON mapping.
    from chirpstack_api import integration
    for line in sys.stdin:
        cmd = parsed(line, integration.DownlinkCommand())
        print(json.dumps(json.loads(json_format.MessageToJson(cmd)), separators=(",", ":")))
    sys.exit(0)

if sys.argv[1] == "downlink":
    # Our DownlinkFrames, read by ChirpStack's definitions (JSON strictly, as
    # the bridge's unmarshaler does: an unknown or mistyped field fails),
    # then ChirpStack-built DownlinkTxAcks for our decoder.
    for line in sys.stdin:
        f = parsed(line, gw.DownlinkFrame())
        item = f.items[0]
        tx = item.tx_info
        lora = tx.modulation.lora
        print(json.dumps({"downlinkId": f.downlink_id, "gatewayId": f.gateway_id, "phy": item.phy_payload.hex(),
                          "frequency": tx.frequency, "power": tx.power, "sf": lora.spreading_factor,
                          "bw": lora.bandwidth, "ipol": lora.polarization_inversion,
                          "codeRate": gw.CodeRate.Name(lora.code_rate),
                          "timing": tx.timing.WhichOneof("parameters"),
                          "delayUs": tx.timing.delay.delay.ToMicroseconds(), "context": tx.context.hex()}))
    for status in (gw.OK, gw.TOO_LATE):
        ack = gw.DownlinkTxAck()
        ack.gateway_id = "0016c001f153a14c"
        ack.downlink_id = 4242
        ack.items.add().status = status
        name = gw.TxAckStatus.Name(status)
        print(json.dumps({"ack": "protobuf", "status": name, "payload": ack.SerializeToString().hex()}))
        print(json.dumps({"ack": "json", "status": name, "payload": json_format.MessageToJson(ack).encode().hex()}))
    sys.exit(0)

phy = bytes.fromhex(sys.argv[1])

v4 = gw.UplinkFrame()
v4.phy_payload = phy
v4.tx_info.frequency = 868100000
v4.tx_info.modulation.lora.bandwidth = 125000
v4.tx_info.modulation.lora.spreading_factor = 7
v4.rx_info.gateway_id = "0016c001f153a14c"
v4.rx_info.uplink_id = 4242
v4.rx_info.gw_time.GetCurrentTime()
v4.rx_info.rssi = -57
v4.rx_info.snr = 7.25
v4.rx_info.context = (123456).to_bytes(4, "big")
v4.rx_info.crc_status = gw.CRC_OK
common = {"gateway": "0016c001f153a14c", "rssi": -57, "snr": 7.25, "tmst": 123456}
print(json.dumps({"kind": "protobuf-v4", "payload": v4.SerializeToString().hex(), **common}))
print(json.dumps({"kind": "json-v4", "payload": json_format.MessageToJson(v4).encode().hex(), **common}))

legacy = gw.UplinkFrame()
legacy.phy_payload = phy
legacy.tx_info_legacy.frequency = 868300000
legacy.rx_info_legacy.gateway_id = bytes.fromhex("0016c001f153a14d")
legacy.rx_info_legacy.rssi = -91
legacy.rx_info_legacy.lora_snr = -3.5
legacy.rx_info_legacy.context = (99).to_bytes(4, "big")
print(json.dumps({"kind": "protobuf-v3", "payload": legacy.SerializeToString().hex(), "gateway": "0016c001f153a14d",
                  "rssi": -91, "snr": -3.5, "tmst": 99}))
