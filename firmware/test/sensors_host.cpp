// Host harness for firmware/lorawan-mote/gga.h and dht22.h (the decoding;
// the pin timing is AVR-only): feeds NMEA sentences and DHT22 byte frames
// and prints what the mote would take from them, one line each.
#include <cstdio>
#include "../lorawan-mote/gga.h"
#include "../lorawan-mote/dht22.h"

static void feed(GgaReader *g, const char *s) {
  uint8_t fixes = 0;
  for (const char *p = s; *p; p++) fixes += gga_feed(g, *p);
  fixes += gga_feed(g, '\r');
  fixes += gga_feed(g, '\n');
  printf("gga %u %.5f %.5f %.2f %u\n", fixes, g->fix.latitude, g->fix.longitude, g->fix.altitude_m,
         g->fix.valid);
}

static void dht(const uint8_t d[5]) {
  Dht22Reading r = {0, 0};
  uint8_t ok = dht22_decode(d, &r);
  printf("dht %u %.1f %.1f\n", ok, r.temperature_c, r.humidity_pct);
}

int main() {
  GgaReader g;
  gga_init(&g);
  feed(&g, "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47");
  feed(&g, "$GNGGA,092750.000,3352.1280,S,15112.5580,E,1,8,1.03,-5.5,M,19.6,M,,*7D");
  // No fix (quality 0): the last fix stays.
  feed(&g, "$GPGGA,123520,4807.038,N,01131.000,W,0,00,,,M,,M,,*4A");
  // Not a GGA sentence; then a GGA with a wrong checksum; then line noise.
  feed(&g, "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A");
  feed(&g, "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48");
  feed(&g, "$GPGGA,1235$GPGGA,12,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,*00");
  const uint8_t warm[5] = {0x02, 0x8c, 0x01, 0x5f, 0xee};
  const uint8_t cold[5] = {0x02, 0x8c, 0x80, 0x65, 0x73};
  const uint8_t corrupt[5] = {0x02, 0x8c, 0x01, 0x5f, 0xef};
  dht(warm);
  dht(cold);
  dht(corrupt);
  return 0;
}
