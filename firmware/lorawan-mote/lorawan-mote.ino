/*
 * device-lorawan mote: Arduino UNO + Dragino LoRa/GPS shield, LMIC, ABP.
 *
 * Sends temperature, humidity, GPS position and battery voltage every
 * `interval_s` seconds on FPort 1, as Cayenne LPP (profile Dragino-LPP-Mote)
 * or, with PAYLOAD_LAYOUT defined, as the 6-byte binary layout (profile
 * Binary-Layout-Mote). A downlink on FPort 2 carrying a uint16 big-endian
 * number of seconds changes the interval (resource reportInterval).
 *
 * Libraries: MCCI LoRaWAN LMIC (or IBM LMIC), TinyGPSPlus, DHT sensor library.
 * Like the classic ttn-abp sketch, the uplink counter restarts at 0 on every
 * boot; device-lorawan's default `reset-tolerant` counter policy expects that.
 *
 * Fill in the session below from your devices.yaml (same DevAddr and keys).
 * Keys here are placeholders: never commit real ones.
 */
#include <lmic.h>
#include <hal/hal.h>
#include <SPI.h>
#include <SoftwareSerial.h>
#include <TinyGPSPlus.h>
#include <DHT.h>

#include "payload.h"

// ABP session, MSB first as printed (LMIC wants the keys as byte arrays).
static const PROGMEM u1_t NWKSKEY[16] = {0x00};  // replace
static const u1_t PROGMEM APPSKEY[16] = {0x00};  // replace
static const u4_t DEVADDR = 0x26011BDA;          // replace

// Not used in ABP, but LMIC links against them.
void os_getArtEui(u1_t *) {}
void os_getDevEui(u1_t *) {}
void os_getDevKey(u1_t *) {}

// Dragino LoRa/GPS shield v1.4 on an UNO.
const lmic_pinmap lmic_pins = {
    .nss = 10,
    .rxtx = LMIC_UNUSED_PIN,
    .rst = 9,
    .dio = {2, 6, 7},
};

static const uint8_t UPLINK_PORT = 1;
static const int BATTERY_PIN = A0;   // via a 1:2 divider
static SoftwareSerial gpsSerial(3, 4);
static TinyGPSPlus gps;
static DHT dht(5, DHT22);
static uint16_t interval_s = 60;
static osjob_t sendjob;

static MoteReading read_sensors() {
  MoteReading r = {};
  r.temperature_c = dht.readTemperature();
  r.humidity_pct = dht.readHumidity();
  r.latitude = gps.location.isValid() ? gps.location.lat() : 0;
  r.longitude = gps.location.isValid() ? gps.location.lng() : 0;
  r.altitude_m = gps.altitude.isValid() ? gps.altitude.meters() : 0;
  r.battery_v = analogRead(BATTERY_PIN) * (5.0f / 1023.0f) * 2.0f;
  r.motion = 0;
  r.error_code = (isnan(r.temperature_c) ? 1 : 0) | (gps.location.isValid() ? 0 : 2);
  if (isnan(r.temperature_c)) r.temperature_c = 0;
  if (isnan(r.humidity_pct)) r.humidity_pct = 0;
  return r;
}

static void do_send(osjob_t *j) {
  if (LMIC.opmode & OP_TXRXPEND) {
    os_setTimedCallback(j, os_getTime() + sec2osticks(1), do_send);
    return;
  }
  MoteReading r = read_sensors();
  uint8_t payload[24];
#ifdef PAYLOAD_LAYOUT
  size_t n = encode_layout(&r, payload, sizeof payload);
#else
  size_t n = encode_lpp(&r, payload, sizeof payload);
#endif
  LMIC_setTxData2(UPLINK_PORT, payload, n, 0);
}

void onEvent(ev_t ev) {
  if (ev == EV_TXCOMPLETE) {
    if (LMIC.dataLen > 0) {
      uint8_t port = LMIC.frame[LMIC.dataBeg - 1];
      if (apply_downlink(port, LMIC.frame + LMIC.dataBeg, LMIC.dataLen, &interval_s)) {
        Serial.print(F("report interval now "));
        Serial.println(interval_s);
      }
    }
    os_setTimedCallback(&sendjob, os_getTime() + sec2osticks(interval_s), do_send);
  }
}

void setup() {
  Serial.begin(9600);
  gpsSerial.begin(9600);
  dht.begin();
  os_init();
  LMIC_reset();
  uint8_t appskey[sizeof(APPSKEY)], nwkskey[sizeof(NWKSKEY)];
  memcpy_P(appskey, APPSKEY, sizeof(APPSKEY));
  memcpy_P(nwkskey, NWKSKEY, sizeof(NWKSKEY));
  LMIC_setSession(0x13, DEVADDR, nwkskey, appskey);
#if defined(CFG_eu868)
  LMIC_setupChannel(0, 868100000, DR_RANGE_MAP(DR_SF12, DR_SF7), BAND_CENTI);
  LMIC_setupChannel(1, 868300000, DR_RANGE_MAP(DR_SF12, DR_SF7B), BAND_CENTI);
  LMIC_setupChannel(2, 868500000, DR_RANGE_MAP(DR_SF12, DR_SF7), BAND_CENTI);
#endif
  LMIC_setLinkCheckMode(0);
  LMIC.dn2Dr = DR_SF9;  // EU868 RX2 as TTN/ChirpStack defaults
  LMIC_setDrTxpow(DR_SF7, 14);
  do_send(&sendjob);
}

void loop() {
  while (gpsSerial.available()) gps.encode(gpsSerial.read());
  os_runloop_once();
}
