"""Gateway-bridge messages built with ChirpStack's own protobuf definitions
(PyPI chirpstack-api): v4 protobuf, v4 JSON (protobuf's JSON mapping, as the
bridge's JSON marshaler writes it), and the legacy v3 fields. One JSON line
per message: {"kind", "payload" (hex), "gateway", "rssi", "snr", "tmst"}."""
import json
import sys

from chirpstack_api import gw
from google.protobuf import json_format

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
