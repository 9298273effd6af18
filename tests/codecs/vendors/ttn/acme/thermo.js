// Acme Thermo: fPort 1 temperature (int16 BE, 0.01 °C), humidity (0.5 %),
// battery (mV, uint16 LE); fPort 2 settings. Written as vendors do: a
// module-level counter, Buffer, and console.
var decoded = 0;

function decodeUplink(input) {
  decoded++;
  if (input.fPort !== 1) {
    return { errors: ['unknown FPort ' + input.fPort] };
  }
  var b = Buffer.from(input.bytes);
  if (b.length < 5) {
    console.warn('short frame', b.toString('hex'));
    return { errors: ['payload too short'] };
  }
  var out = {
    temperature: b.readInt16BE(0) / 100,
    humidity: b.readUInt8(2) / 2,
    battery: b.readUInt16LE(3) / 1000,
    decodedSinceStart: decoded,
    hour: input.recvTime.getUTCHours(),
  };
  var warnings = out.battery < 3 ? ['battery low'] : [];
  return { data: out, warnings: warnings };
}

function encodeDownlink(input) {
  if (typeof input.data.interval !== 'number') {
    return { errors: ['interval missing'] };
  }
  var b = Buffer.alloc(2);
  b.writeUInt16BE(input.data.interval, 0);
  return { bytes: Array.from(b), fPort: 2 };
}
