"""Encode one Cayenne LPP record of every type pycayennelpp knows, print
JSON lines {"hex": ..., "channel": c, "type": t, "values": [...]} for the
Rust side to decode and compare."""
import json

from cayennelpp import LppFrame
from cayennelpp.lpp_type import LppType

TYPES = LppType._LppType__lpp_types  # the library's own table

for channel, (type_id, (name, sizes, scales, signs)) in enumerate(sorted(TYPES.items())):
    values = []
    for size, scale, signed in zip(sizes, scales, signs):
        raw = -123 if signed else 200
        values.append(raw / scale)
    frame = LppFrame()
    frame.add_by_type(type_id, channel, tuple(values))
    # The inputs are exact multiples of each field's resolution, so the
    # bytes carry them exactly.
    print(json.dumps({"hex": bytes(frame).hex(), "channel": channel, "type": type_id, "name": name,
                      "values": values}))
