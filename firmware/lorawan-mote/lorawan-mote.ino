/*
 * device-lorawan mote: Arduino UNO + Dragino LoRa/GPS shield, MCCI LMIC, ABP,
 * EU868, class A.
 *
 * Sends temperature, humidity, GPS position and battery voltage every
 * `interval_s` seconds on FPort 1, as Cayenne LPP (profile Dragino-LPP-Mote)
 * or, with PAYLOAD_LAYOUT defined, as the 6-byte binary layout (profile
 * Binary-Layout-Mote). A downlink on FPort 2 carrying a uint16 big-endian
 * number of seconds changes the interval (resource reportInterval).
 *
 * Library: MCCI LoRaWAN LMIC, configured by firmware/lmic_project_config.h
 * (copy it over the library's project_config/lmic_project_config.h). The
 * DHT22 and GPS readers are our own (dht22.h, gga.h): the usual libraries
 * did not fit the UNO beside LMIC. `firmware/build-uno.sh` builds this for
 * the UNO and prints flash, RAM and worst-case stack against its limits.
 *
 * The session and receive windows come from settings.h, written by
 *   device-lorawan sketch-settings --device <name> > settings.h
 * from the same devices-file entry the service uses, so the mote listens
 * where the service sends. Like the classic ttn-abp sketch, the uplink
 * counter restarts at 0 on every boot; the service's default
 * `reset-tolerant` counter policy expects that.
 *
 * An OTAA device's entry (`activation: otaa`) gives a settings.h with
 * MOTE_OTAA: the sketch then joins (the service is its join server), takes
 * its session and windows from the JoinAccept, and joins again after every
 * boot. The payload encoder is the same.
 */
#include <lmic.h>
#include <hal/hal.h>
#include <SPI.h>
#include <SoftwareSerial.h>

#include "settings.h"
#include "payload.h"
#include "dht22.h"
#include "gga.h"

/* The channel setup, duty-cycle bands and the service's default windows
 * below are EU868's. Another region needs its own (and the devices file's
 * rxWindows to match): define MOTE_OTHER_REGION_CONFIGURED once done. */
#if !defined(CFG_eu868) && !defined(MOTE_OTHER_REGION_CONFIGURED)
#error "This sketch is set up for EU868: set CFG_eu868 in lmic_project_config.h, or adapt setup() for your region and define MOTE_OTHER_REGION_CONFIGURED"
#endif
#if !defined(DISABLE_PING) || !defined(DISABLE_BEACONS)
#error "Use firmware/lmic_project_config.h (class A only): without it LMIC does not fit the UNO"
#endif

#ifdef MOTE_OTAA
static const u1_t PROGMEM JOINEUI[8] = MOTE_JOINEUI;
static const u1_t PROGMEM DEVEUI[8] = MOTE_DEVEUI;
static const u1_t PROGMEM APPKEY[16] = MOTE_APPKEY;
void os_getArtEui(u1_t *buf) { memcpy_P(buf, JOINEUI, 8); }
void os_getDevEui(u1_t *buf) { memcpy_P(buf, DEVEUI, 8); }
void os_getDevKey(u1_t *buf) { memcpy_P(buf, APPKEY, 16); }
#else
static const PROGMEM u1_t NWKSKEY[16] = MOTE_NWKSKEY;
static const PROGMEM u1_t APPSKEY[16] = MOTE_APPSKEY;

// Not used in ABP, but LMIC_reset() calls them.
void os_getArtEui(u1_t *) {}
void os_getDevEui(u1_t *) {}
void os_getDevKey(u1_t *) {}
#endif

// Dragino LoRa/GPS shield v1.4 on an UNO.
const lmic_pinmap lmic_pins = {
    .nss = 10,
    .rxtx = LMIC_UNUSED_PIN,
    .rst = 9,
    .dio = {2, 6, 7},
};

static const uint8_t UPLINK_PORT = 1;
static const int BATTERY_PIN = A0;   // via a 1:2 divider
static const uint8_t DHT_PIN = 5;
static SoftwareSerial gpsSerial(3, 4);
static GgaReader gps;
static uint16_t interval_s = 60;
static osjob_t sendjob;

static MoteReading read_sensors() {
  MoteReading r = {};
  Dht22Reading th;
  uint8_t dht_ok = dht22_read(DHT_PIN, &th);
  r.temperature_c = dht_ok ? th.temperature_c : 0;
  r.humidity_pct = dht_ok ? th.humidity_pct : 0;
  r.latitude = gps.fix.latitude;
  r.longitude = gps.fix.longitude;
  r.altitude_m = gps.fix.altitude_m;
  r.battery_v = analogRead(BATTERY_PIN) * (5.0f / 1023.0f) * 2.0f;
  r.motion = 0;
  r.error_code = (dht_ok ? 0 : 1) | (gps.fix.valid ? 0 : 2);
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
#ifdef MOTE_OTAA
  if (ev == EV_JOINED) {
    // As LMIC's OTAA examples do: no link-check requests.
    LMIC_setLinkCheckMode(0);
    return;
  }
#endif
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
  gga_init(&gps);
  os_init();
  LMIC_reset();
#ifdef MOTE_OTAA
  // The first LMIC_setTxData2 starts the join: the JoinAccept brings the
  // session, the RX1 offset, the RX2 rate and the RX1 delay.
#else
  uint8_t appskey[sizeof(APPSKEY)], nwkskey[sizeof(NWKSKEY)];
  memcpy_P(appskey, APPSKEY, sizeof(APPSKEY));
  memcpy_P(nwkskey, NWKSKEY, sizeof(NWKSKEY));
  LMIC_setSession(0x13, MOTE_DEVADDR, nwkskey, appskey);
#if defined(CFG_eu868)
  LMIC_setupChannel(0, 868100000, DR_RANGE_MAP(DR_SF12, DR_SF7), BAND_CENTI);
  LMIC_setupChannel(1, 868300000, DR_RANGE_MAP(DR_SF12, DR_SF7B), BAND_CENTI);
  LMIC_setupChannel(2, 868500000, DR_RANGE_MAP(DR_SF12, DR_SF7), BAND_CENTI);
#endif
  LMIC_setLinkCheckMode(0);
  // Listen where the service sends (settings.h, from the devices file).
  LMIC.rxDelay = MOTE_RX1_DELAY_S;
  LMIC.rx1DrOffset = MOTE_RX1_DR_OFFSET;
  LMIC.dn2Freq = MOTE_RX2_FREQUENCY_HZ;
  LMIC.dn2Dr = MOTE_RX2_DR;
#endif
  // The UNO's 16 MHz ceramic resonator is good to about +/-0.5%; MCCI's
  // timing notes ask boards worse than 100 ppm to declare it, and LMIC
  // honours up to 0.4% (it folds larger values back to that), so declare
  // 0.4%: the RX windows open early enough for the clock's drift.
  LMIC_setClockError(MAX_CLOCK_ERROR * 4 / 1000);
  LMIC_setDrTxpow(DR_SF7, 14);
  do_send(&sendjob);
}

void loop() {
  while (gpsSerial.available()) gga_feed(&gps, (char)gpsSerial.read());
  os_runloop_once();
}
