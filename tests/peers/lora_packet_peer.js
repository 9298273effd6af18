// lora-packet (npm) as an independent LoRaWAN 1.0 implementation.
//   node lora_packet_peer.js encode   -> JSON lines of frames lora-packet built
//   node lora_packet_peer.js verify   <- JSON lines {hex, nwk, app, fcnt32}
//                                     -> JSON lines {micOk, payload}
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
