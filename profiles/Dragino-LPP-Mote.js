// The project's mote (firmware/lorawan-mote) as a vendor would ship its
// codec: LoRa Alliance TS013 decodeUplink / encodeDownlink. It reads the
// Cayenne LPP records the firmware sends on fPort 1 into the readings the
// profile names (the same ones `codec: cayenne-lpp` gives), and encodes the
// report interval downlink (fPort 2, big-endian uint16 seconds).
function u16(b, i) { return (b[i] << 8) | b[i + 1]; }
function s16(b, i) { var v = u16(b, i); return v & 0x8000 ? v - 0x10000 : v; }
function s24(b, i) { var v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2]; return v & 0x800000 ? v - 0x1000000 : v; }

function decodeUplink(input) {
  if (input.fPort !== 1) return { errors: ["unknown fPort " + input.fPort] };
  var b = input.bytes, data = {}, warnings = [], i = 0;
  while (i < b.length) {
    var at = i;
    if (i + 2 > b.length) return { errors: ["truncated record at byte " + at] };
    var type = b[i + 1];
    i += 2;
    if (type === 103) { data.temperature = s16(b, i) / 10; i += 2; }          // 0.1 degC
    else if (type === 104) { data.humidity = b[i] / 2; i += 1; }              // 0.5 %RH
    else if (type === 116) { data.battery = u16(b, i) / 100; i += 2; }        // 0.01 V
    else if (type === 136) {                                                   // GPS
      data.latitude = s24(b, i) / 10000;
      data.longitude = s24(b, i + 3) / 10000;
      data.altitude = s24(b, i + 6) / 100;
      i += 9;
    } else return { errors: ["unknown LPP type " + type + " at byte " + at] };
    if (i > b.length) return { errors: ["truncated record at byte " + at] };
  }
  if (data.battery !== undefined && data.battery < 3.0) warnings.push("battery low");
  return { data: data, warnings: warnings };
}

function encodeDownlink(input) {
  var s = input.data.reportInterval;
  if (typeof s !== "number" || s < 10 || s > 3600 || s % 1 !== 0)
    return { errors: ["reportInterval must be a whole number of seconds in 10..3600"] };
  return { bytes: [(s >> 8) & 0xff, s & 0xff], fPort: 2 };
}
