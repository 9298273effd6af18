// lora-packet (npm) as an independent LoRaWAN 1.0 implementation.
//   node lora_packet_peer.js encode   -> JSON lines of frames lora-packet built
//   node lora_packet_peer.js verify   <- JSON lines {hex, nwk, app, fcnt32}
//                                     -> JSON lines {micOk, payload}
//   node lora_packet_peer.js joinreq  -> JSON lines of JoinRequests it built
//   node lora_packet_peer.js accept   <- JSON lines {hex, appKey, devNonce}
//                                     -> JSON lines {micOk, fields, keys}
//   node lora_packet_peer.js downmac  <- JSON lines {hex, nwk, app, fcnt32}
//                                     -> JSON lines {micOk, fopts, fport, payload}
const lp = require("lora-packet");
const readline = require("readline");

const hex = (s) => Buffer.from(s, "hex");
// lora-packet takes the counter's two high bytes separately, in B0 (wire) order.
const msb = (fcnt32) => Buffer.from([(fcnt32 >>> 16) & 0xff, (fcnt32 >>> 24) & 0xff]);

if (process.argv[2] === "encode") {
  const nwk = "2b7e151628aed2a6abf7158809cf4f3c";
  const app = "000102030405060708090a0b0c0d0e0f";
  const cases = [
    { MType: "Unconfirmed Data Up", FCnt: 0, FPort: 1, payload: "01670110026850" },
    { MType: "Confirmed Data Up", FCnt: 7, FPort: 2, payload: "00" },
    { MType: "Unconfirmed Data Up", FCnt: 65535, FPort: 200, payload: "48656c6c6f2c20776f726c6421" },
    { MType: "Unconfirmed Data Up", FCnt: 300, FPort: 1, payload: "54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f672e" },
  ];
  for (const c of cases) {
    const p = lp.fromFields(
      { MType: c.MType, DevAddr: hex("26011bda"), FCtrl: { ADR: true }, FCnt: c.FCnt, FPort: c.FPort, payload: hex(c.payload) },
      hex(app), hex(nwk));
    console.log(JSON.stringify({ hex: p.getPHYPayload().toString("hex"), nwk, app, fcnt: c.FCnt, fport: c.FPort,
      payload: c.payload, confirmed: c.MType.startsWith("Confirmed") }));
  }
} else if (process.argv[2] === "joinreq") {
  // EUIs and the DevNonce as printed (MSB first); lora-packet puts them on air LSB first.
  const cases = [
    { appKey: "2b7e151628aed2a6abf7158809cf4f3c", joinEui: "70b3d57ed0000000", devEui: "0004a30b001c0530", devNonce: "1234" },
    { appKey: "00112233445566778899aabbccddeeff", joinEui: "0000000000000000", devEui: "70b3d57ed0000001", devNonce: "ffff" },
  ];
  for (const c of cases) {
    const p = lp.fromFields(
      { MType: "Join Request", AppEUI: hex(c.joinEui), DevEUI: hex(c.devEui), DevNonce: hex(c.devNonce) },
      undefined, undefined, hex(c.appKey));
    console.log(JSON.stringify({ hex: p.getPHYPayload().toString("hex"), ...c }));
  }
} else if (process.argv[2] === "accept") {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const t = JSON.parse(line);
    const enc = lp.fromWire(hex(t.hex));
    const p = lp.fromWire(lp.decryptJoinAccept(enc, hex(t.appKey)));
    const micOk = lp.verifyMIC(p, undefined, hex(t.appKey));
    const keys = lp.generateSessionKeys(hex(t.appKey), p.NetID, p.AppNonce, hex(t.devNonce));
    console.log(JSON.stringify({
      micOk,
      joinNonce: p.AppNonce.toString("hex"),
      netId: p.NetID.toString("hex"),
      devAddr: p.DevAddr.toString("hex"),
      dlSettings: p.DLSettings.readUInt8(0),
      rxDelay: p.RxDelay.readUInt8(0),
      cfList: p.CFList.toString("hex"),
      nwkSKey: keys.NwkSKey.toString("hex"),
      appSKey: keys.AppSKey.toString("hex"),
    }));
  });
} else if (process.argv[2] === "downmac") {
  // A downlink's MAC commands as a device finds them: FOpts in clear, or an
  // FPort 0 payload that lora-packet decrypts with the NwkSKey.
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const t = JSON.parse(line);
    const p = lp.fromWire(hex(t.hex));
    const micOk = lp.verifyMIC(p, hex(t.nwk), undefined, msb(t.fcnt32));
    const fport = p.FPort === undefined ? null : p.FPort.readUInt8(0);
    const payload = fport === null ? "" : lp.decrypt(p, hex(t.app), hex(t.nwk), msb(t.fcnt32)).toString("hex");
    console.log(JSON.stringify({ micOk, fopts: p.FOpts.toString("hex"), fport, payload }));
  });
} else {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const t = JSON.parse(line);
    const p = lp.fromWire(hex(t.hex));
    const micOk = lp.verifyMIC(p, hex(t.nwk), undefined, msb(t.fcnt32));
    const payload = lp.decrypt(p, hex(t.app), hex(t.nwk), msb(t.fcnt32)).toString("hex");
    console.log(JSON.stringify({ micOk, payload }));
  });
}
