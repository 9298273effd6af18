// What the engine gives every codec beside the language, as ChirpStack v4
// and The Things Stack give it: `console` (to the service's log, rate
// limited by the host function `__lorawan_log`) and Node's `Buffer` (the
// part vendor codecs use: from/alloc/concat, toString in hex, base64,
// utf8, ascii and latin1, and the read/write accessors with Node's bounds
// checks). Defined once per codec context, before the codec's own script.
(function (global) {
  "use strict";
  var log = global.__lorawan_log;
  function text(v) {
    if (typeof v === "string") return v;
    if (v instanceof Error) return String(v);
    try {
      var s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      return String(v);
    }
  }
  function logger(level) {
    return function () {
      log(level, Array.prototype.map.call(arguments, text).join(" "));
    };
  }
  global.console = {
    log: logger("info"),
    info: logger("info"),
    debug: logger("debug"),
    trace: logger("debug"),
    warn: logger("warn"),
    error: logger("error"),
  };
  delete global.__lorawan_log;

  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function utf8Bytes(s) {
    var out = [];
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
        var d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d < 0xe000) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        } else c = 0xfffd;
      } else if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
      if (c < 0x80) out.push(c);
      else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return out;
  }
  function utf8Text(b, start, end) {
    var s = "";
    for (var i = start; i < end; ) {
      var c = b[i++], n = 0, cp;
      if (c < 0x80) cp = c;
      else if (c >= 0xc2 && c < 0xe0) { n = 1; cp = c & 31; }
      else if (c >= 0xe0 && c < 0xf0) { n = 2; cp = c & 15; }
      else if (c >= 0xf0 && c < 0xf5) { n = 3; cp = c & 7; }
      else { s += "\ufffd"; continue; }
      if (i + n > end) { s += "\ufffd"; break; }
      var ok = true;
      for (var k = 0; k < n; k++) {
        var d = b[i + k];
        if ((d & 0xc0) !== 0x80) { ok = false; break; }
        cp = (cp << 6) | (d & 63);
      }
      if (!ok) { s += "\ufffd"; continue; }
      i += n;
      s += String.fromCodePoint(cp);
    }
    return s;
  }
  function base64Bytes(s) {
    s = s.replace(/[-_]/g, function (c) { return c === "-" ? "+" : "/"; }).replace(/[^A-Za-z0-9+/]/g, "");
    var out = [], bits = 0, acc = 0;
    for (var i = 0; i < s.length; i++) {
      acc = (acc << 6) | B64.indexOf(s[i]);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out.push((acc >> bits) & 255);
      }
    }
    return out;
  }
  function base64Text(b, start, end) {
    var s = "";
    for (var i = start; i < end; i += 3) {
      var n = (b[i] << 16) | ((i + 1 < end ? b[i + 1] : 0) << 8) | (i + 2 < end ? b[i + 2] : 0);
      s += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      s += i + 1 < end ? B64[(n >> 6) & 63] : "=";
      s += i + 2 < end ? B64[n & 63] : "=";
    }
    return s;
  }
  function encoding(enc) {
    var e = (enc === undefined ? "utf8" : String(enc)).toLowerCase();
    if (e === "utf-8") return "utf8";
    if (e === "binary") return "latin1";
    if (e === "ucs2" || e === "ucs-2" || e === "utf16le" || e === "utf-16le") return "utf16le";
    if (["utf8", "hex", "base64", "base64url", "ascii", "latin1"].indexOf(e) < 0)
      throw new TypeError("Unknown encoding: " + enc);
    return e;
  }
  function range(buf, offset, size) {
    if (offset === undefined) offset = 0;
    if (typeof offset !== "number" || offset !== Math.floor(offset))
      throw new TypeError('The "offset" argument must be an integer. Received ' + offset);
    if (offset < 0 || offset + size > buf.length)
      throw new RangeError('The value of "offset" is out of range. It must be >= 0 and <= ' +
        (buf.length - size) + ". Received " + offset);
    return offset;
  }
  function view(buf) {
    return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  class Buffer extends Uint8Array {
    static from(value, encOrOffset, length) {
      if (typeof value === "string") {
        var e = encoding(encOrOffset), bytes;
        if (e === "hex") {
          bytes = [];
          for (var i = 0; i + 1 < value.length; i += 2) {
            var h = parseInt(value.substr(i, 2), 16);
            if (isNaN(h)) break;
            bytes.push(h);
          }
        } else if (e === "base64" || e === "base64url") bytes = base64Bytes(value);
        else if (e === "utf8") bytes = utf8Bytes(value);
        else if (e === "utf16le") {
          bytes = [];
          for (var j = 0; j < value.length; j++) {
            var c = value.charCodeAt(j);
            bytes.push(c & 255, c >> 8);
          }
        } else {
          bytes = [];
          for (var k = 0; k < value.length; k++) bytes.push(value.charCodeAt(k) & 255);
        }
        return Buffer.__of(bytes);
      }
      if (value instanceof ArrayBuffer) {
        var off = encOrOffset === undefined ? 0 : encOrOffset;
        return new Buffer(value, off, length === undefined ? value.byteLength - off : length);
      }
      if (value && typeof value === "object" && value.type === "Buffer" && Array.isArray(value.data))
        return Buffer.__of(value.data);
      if (value && typeof value.length === "number") return Buffer.__of(value);
      throw new TypeError("The first argument must be a string, Buffer, ArrayBuffer, Array, or array-like object.");
    }
    static __of(list) {
      var b = new Buffer(list.length);
      for (var i = 0; i < list.length; i++) b[i] = list[i] & 255;
      return b;
    }
    static alloc(size, fill, enc) {
      var b = new Buffer(size);
      if (fill !== undefined && fill !== 0) {
        if (typeof fill === "string") {
          var f = Buffer.from(fill, enc);
          for (var i = 0; f.length && i < size; i++) b[i] = f[i % f.length];
        } else b.fill(fill);
      }
      return b;
    }
    static allocUnsafe(size) { return new Buffer(size); }
    static isBuffer(b) { return b instanceof Buffer; }
    static isEncoding(e) { try { encoding(e); return true; } catch (x) { return false; } }
    static byteLength(s, enc) {
      return typeof s === "string" ? Buffer.from(s, enc).length : s.byteLength;
    }
    static concat(list, total) {
      if (total === undefined) total = list.reduce(function (n, b) { return n + b.length; }, 0);
      var out = Buffer.alloc(total), at = 0;
      for (var i = 0; i < list.length && at < total; i++) {
        var b = list[i];
        for (var j = 0; j < b.length && at < total; j++) out[at++] = b[j];
      }
      return out;
    }
    toString(enc, start, end) {
      start = start === undefined ? 0 : Math.max(0, start | 0);
      end = end === undefined ? this.length : Math.min(this.length, end | 0);
      if (end <= start) return "";
      var e = encoding(enc), s = "", i;
      if (e === "hex") {
        for (i = start; i < end; i++) s += (this[i] < 16 ? "0" : "") + this[i].toString(16);
        return s;
      }
      if (e === "base64") return base64Text(this, start, end);
      if (e === "base64url") return base64Text(this, start, end).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
      if (e === "utf8") return utf8Text(this, start, end);
      if (e === "utf16le") {
        for (i = start; i + 1 < end; i += 2) s += String.fromCharCode(this[i] | (this[i + 1] << 8));
        return s;
      }
      for (i = start; i < end; i++) s += String.fromCharCode(e === "ascii" ? this[i] & 127 : this[i]);
      return s;
    }
    toJSON() { return { type: "Buffer", data: Array.prototype.slice.call(this) }; }
    equals(other) {
      if (this.length !== other.length) return false;
      for (var i = 0; i < this.length; i++) if (this[i] !== other[i]) return false;
      return true;
    }
    slice(start, end) { return this.subarray(start, end); }
    readUInt8(o) { return this[range(this, o, 1)]; }
    readInt8(o) { var v = this[range(this, o, 1)]; return v & 0x80 ? v - 0x100 : v; }
    readUInt16LE(o) { o = range(this, o, 2); return this[o] | (this[o + 1] << 8); }
    readUInt16BE(o) { o = range(this, o, 2); return (this[o] << 8) | this[o + 1]; }
    readInt16LE(o) { var v = this.readUInt16LE(o); return v & 0x8000 ? v - 0x10000 : v; }
    readInt16BE(o) { var v = this.readUInt16BE(o); return v & 0x8000 ? v - 0x10000 : v; }
    readUInt32LE(o) { return view(this).getUint32(range(this, o, 4), true); }
    readUInt32BE(o) { return view(this).getUint32(range(this, o, 4), false); }
    readInt32LE(o) { return view(this).getInt32(range(this, o, 4), true); }
    readInt32BE(o) { return view(this).getInt32(range(this, o, 4), false); }
    readFloatLE(o) { return view(this).getFloat32(range(this, o, 4), true); }
    readFloatBE(o) { return view(this).getFloat32(range(this, o, 4), false); }
    readDoubleLE(o) { return view(this).getFloat64(range(this, o, 8), true); }
    readDoubleBE(o) { return view(this).getFloat64(range(this, o, 8), false); }
    readUIntBE(o, n) { o = range(this, o, n); var v = 0; for (var i = 0; i < n; i++) v = v * 256 + this[o + i]; return v; }
    readUIntLE(o, n) { o = range(this, o, n); var v = 0; for (var i = n - 1; i >= 0; i--) v = v * 256 + this[o + i]; return v; }
    readIntBE(o, n) { var v = this.readUIntBE(o, n), top = Math.pow(2, 8 * n - 1); return v >= top ? v - 2 * top : v; }
    readIntLE(o, n) { var v = this.readUIntLE(o, n), top = Math.pow(2, 8 * n - 1); return v >= top ? v - 2 * top : v; }
    writeUInt8(v, o) { this[range(this, o, 1)] = v; return (o || 0) + 1; }
    writeInt8(v, o) { this[range(this, o, 1)] = v & 255; return (o || 0) + 1; }
    writeUInt16LE(v, o) { view(this).setUint16(range(this, o, 2), v, true); return (o || 0) + 2; }
    writeUInt16BE(v, o) { view(this).setUint16(range(this, o, 2), v, false); return (o || 0) + 2; }
    writeInt16LE(v, o) { view(this).setInt16(range(this, o, 2), v, true); return (o || 0) + 2; }
    writeInt16BE(v, o) { view(this).setInt16(range(this, o, 2), v, false); return (o || 0) + 2; }
    writeUInt32LE(v, o) { view(this).setUint32(range(this, o, 4), v, true); return (o || 0) + 4; }
    writeUInt32BE(v, o) { view(this).setUint32(range(this, o, 4), v, false); return (o || 0) + 4; }
    writeInt32LE(v, o) { view(this).setInt32(range(this, o, 4), v, true); return (o || 0) + 4; }
    writeInt32BE(v, o) { view(this).setInt32(range(this, o, 4), v, false); return (o || 0) + 4; }
    writeFloatLE(v, o) { view(this).setFloat32(range(this, o, 4), v, true); return (o || 0) + 4; }
    writeFloatBE(v, o) { view(this).setFloat32(range(this, o, 4), v, false); return (o || 0) + 4; }
    writeDoubleLE(v, o) { view(this).setFloat64(range(this, o, 8), v, true); return (o || 0) + 8; }
    writeDoubleBE(v, o) { view(this).setFloat64(range(this, o, 8), v, false); return (o || 0) + 8; }
  }
  // Node spells the unsigned accessors both ways.
  ["8", "16LE", "16BE", "32LE", "32BE"].forEach(function (s) {
    Buffer.prototype["readUint" + s] = Buffer.prototype["readUInt" + s];
    Buffer.prototype["writeUint" + s] = Buffer.prototype["writeUInt" + s];
  });
  Buffer.prototype.readUintBE = Buffer.prototype.readUIntBE;
  Buffer.prototype.readUintLE = Buffer.prototype.readUIntLE;
  global.Buffer = Buffer;
})(globalThis);
