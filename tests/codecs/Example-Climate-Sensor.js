// Written in the style vendors ship codecs: bit fields, signed and scaled
// values, several fPorts, nested objects, a downlink encoder.
function s16(hi, lo) { var v = (hi << 8) | lo; return v & 0x8000 ? v - 0x10000 : v; }
function decodeUplink(input) {
  var b = input.bytes;
  switch (input.fPort) {
    case 1:
      if (b.length < 7) return { errors: ["payload too short: " + b.length + " bytes"] };
      return {
        data: {
          temperature: s16(b[0], b[1]) / 10,
          humidity: b[2] / 2,
          battery: { voltage: ((b[3] << 8) | b[4]) / 1000, low: (b[5] & 0x80) !== 0 },
          status: b[6] & 0x0f,
          channels: [s16(b[0], b[1]), b[2]],
          model: input.variables.model || "ECS-1",
          firmware: "1.2.0",
        },
        warnings: b[6] & 0x10 ? ["sensor warming up"] : [],
      };
    case 2:
      return { data: { interval: (b[0] << 8) | b[1] } };
    default:
      return { errors: ["unknown fPort " + input.fPort] };
  }
}
function encodeDownlink(input) {
  var v = input.data.interval;
  if (typeof v !== "number") return { errors: ["interval missing"] };
  return { bytes: [3, (v >> 8) & 0xff, v & 0xff], fPort: 10 };
}
