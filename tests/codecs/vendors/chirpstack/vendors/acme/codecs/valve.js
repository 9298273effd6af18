// Acme Valve, a ChirpStack v3 codec: Decode(fPort, bytes, variables) and
// Encode(fPort, obj, variables).
function Decode(fPort, bytes, variables) {
  if (fPort === 0x78) {
    return {
      open: (bytes[0] & 0x01) === 1,
      flow: ((bytes[1] << 8) | bytes[2]) / 10,
      site: variables.site,
    };
  }
  return { raw: bytes.length };
}

function Encode(fPort, obj, variables) {
  return [obj.open ? 1 : 0];
}
