/*
 * Payload encoding for the device-lorawan mote, in plain C++ with no Arduino
 * dependency, so the host test (tests/firmware.rs) compiles this very file
 * with g++ and checks its bytes decode, through device-lorawan's codec, to
 * the readings that went in.
 *
 * Two encodings, matching the two profiles in profiles/:
 *   - Cayenne LPP   (Dragino-LPP-Mote):   ch1 temperature, ch2 humidity,
 *                                          ch3 GPS, ch4 battery voltage
 *   - binary layout (Binary-Layout-Mote):  int16 BE temperature (0.01 degC),
 *                                          uint8 humidity (0.5 %RH), uint16 LE
 *                                          battery (mV), status bits
 * and the one downlink the mote understands: FPort 2, a uint16 big-endian
 * report interval in seconds (profile resource reportInterval).
 */
#ifndef DEVICE_LORAWAN_PAYLOAD_H
#define DEVICE_LORAWAN_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

struct MoteReading {
  float temperature_c;
  float humidity_pct;
  float latitude;   /* degrees */
  float longitude;  /* degrees */
  float altitude_m;
  float battery_v;
  uint8_t motion;     /* 0 or 1 */
  uint8_t error_code; /* 0..7 */
};

static const uint8_t LPP_TEMPERATURE = 103, LPP_HUMIDITY = 104, LPP_GPS = 136, LPP_VOLTAGE = 116;
static const uint8_t DOWNLINK_PORT_INTERVAL = 2;
static const uint16_t INTERVAL_MIN_S = 10, INTERVAL_MAX_S = 3600;

/* Round half away from zero, as Cayenne LPP encoders do. */
static inline long lpp_round(float v) { return (long)(v < 0 ? v - 0.5f : v + 0.5f); }

static inline size_t put_be(uint8_t *out, long v, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)((unsigned long)v >> (8 * (n - 1 - i)));
  return n;
}

/* Cayenne LPP: 4 + 3 + 11 + 4 = 22 bytes. Returns the length, or 0 if cap is too small. */
static inline size_t encode_lpp(const MoteReading *r, uint8_t *out, size_t cap) {
  if (cap < 22) return 0;
  size_t n = 0;
  out[n++] = 1; out[n++] = LPP_TEMPERATURE; n += put_be(out + n, lpp_round(r->temperature_c * 10.0f), 2);
  out[n++] = 2; out[n++] = LPP_HUMIDITY;    n += put_be(out + n, lpp_round(r->humidity_pct * 2.0f), 1);
  out[n++] = 3; out[n++] = LPP_GPS;
  n += put_be(out + n, lpp_round(r->latitude * 10000.0f), 3);
  n += put_be(out + n, lpp_round(r->longitude * 10000.0f), 3);
  n += put_be(out + n, lpp_round(r->altitude_m * 100.0f), 3);
  out[n++] = 4; out[n++] = LPP_VOLTAGE;     n += put_be(out + n, lpp_round(r->battery_v * 100.0f), 2);
  return n;
}

/* Binary layout: 6 bytes. */
static inline size_t encode_layout(const MoteReading *r, uint8_t *out, size_t cap) {
  if (cap < 6) return 0;
  long t = lpp_round(r->temperature_c * 100.0f);
  put_be(out, t, 2);
  out[2] = (uint8_t)lpp_round(r->humidity_pct * 2.0f);
  long mv = lpp_round(r->battery_v * 1000.0f);
  out[3] = (uint8_t)(mv & 0xff); /* little-endian, as the profile says */
  out[4] = (uint8_t)((mv >> 8) & 0xff);
  out[5] = (uint8_t)((r->motion & 1) | ((r->error_code & 7) << 1));
  return 6;
}

/* Apply a downlink. Returns 1 and sets *interval_s if it was a valid
 * interval command, 0 otherwise (wrong port, length or range: ignored). */
static inline int apply_downlink(uint8_t port, const uint8_t *data, size_t len, uint16_t *interval_s) {
  if (port != DOWNLINK_PORT_INTERVAL || len != 2) return 0;
  uint16_t v = (uint16_t)((data[0] << 8) | data[1]);
  if (v < INTERVAL_MIN_S || v > INTERVAL_MAX_S) return 0;
  *interval_s = v;
  return 1;
}

#endif
