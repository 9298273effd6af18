/*
 * A streaming NMEA GGA reader: position and altitude from the GPS module's
 * $GPGGA / $GNGGA sentences, one character at a time, in about 40 bytes of
 * RAM and no dependency (it replaces TinyGPSPlus, which cost the UNO build
 * several kilobytes of flash it did not have). Plain C++, so the host test
 * (tests/firmware.rs) compiles this very file with g++.
 *
 * A fix is taken only from a whole sentence with a valid checksum and a fix
 * quality above 0; anything else leaves the last fix as it was.
 */
#ifndef DEVICE_LORAWAN_GGA_H
#define DEVICE_LORAWAN_GGA_H

#include <stdint.h>

struct GgaFix {
  float latitude;   /* degrees, north positive */
  float longitude;  /* degrees, east positive */
  float altitude_m; /* above mean sea level */
  uint8_t valid;    /* a fix has been read */
};

struct GgaReader {
  GgaFix fix;
  /* The sentence being read. */
  uint8_t in_sentence, field, sum, star, star_digits, expect_sum, is_gga, quality;
  char buf[12];
  uint8_t len;
  float lat, lon, alt;
};

static inline void gga_init(GgaReader *g) {
  uint8_t *p = (uint8_t *)g;
  for (unsigned i = 0; i < sizeof *g; i++) p[i] = 0;
}

/* "ddmm.mmmm" (deg_digits = 2) or "dddmm.mmmm" (3) as degrees. */
static inline float gga_degrees(const char *s, uint8_t n, uint8_t deg_digits) {
  float deg = 0, min = 0, scale = 0;
  for (uint8_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '.') { scale = 1; continue; }
    if (c < '0' || c > '9') return 0;
    if (i < deg_digits) deg = deg * 10 + (c - '0');
    else if (scale == 0) min = min * 10 + (c - '0');
    else { scale *= 0.1f; min += (c - '0') * scale; }
  }
  return deg + min / 60.0f;
}

static inline float gga_number(const char *s, uint8_t n) {
  float v = 0, scale = 0;
  int8_t sign = 1;
  for (uint8_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '-' && i == 0) { sign = -1; continue; }
    if (c == '.') { scale = 1; continue; }
    if (c < '0' || c > '9') return 0;
    if (scale == 0) v = v * 10 + (c - '0');
    else { scale *= 0.1f; v += (c - '0') * scale; }
  }
  return sign * v;
}

static inline uint8_t gga_hex(char c) {
  if (c >= '0' && c <= '9') return (uint8_t)(c - '0');
  if (c >= 'A' && c <= 'F') return (uint8_t)(c - 'A' + 10);
  return 0xff;
}

/* The field just ended (at ',' or '*'). */
static inline void gga_field(GgaReader *g) {
  const char *b = g->buf;
  uint8_t n = g->len;
  switch (g->field) {
    case 0: g->is_gga = n == 5 && b[2] == 'G' && b[3] == 'G' && b[4] == 'A'; break;
    case 2: g->lat = gga_degrees(b, n, 2); break;
    case 3: if (n == 1 && b[0] == 'S') g->lat = -g->lat; break;
    case 4: g->lon = gga_degrees(b, n, 3); break;
    case 5: if (n == 1 && b[0] == 'W') g->lon = -g->lon; break;
    case 6: g->quality = n == 1 ? (uint8_t)(b[0] - '0') : 0; break;
    case 9: g->alt = gga_number(b, n); break;
  }
  g->field++;
  g->len = 0;
}

/* Feed one character; returns 1 when it completed a new fix. */
static inline uint8_t gga_feed(GgaReader *g, char c) {
  if (c == '$') {
    g->in_sentence = 1; g->field = 0; g->sum = 0; g->star = 0; g->len = 0;
    g->is_gga = 0; g->quality = 0; g->lat = g->lon = g->alt = 0;
    return 0;
  }
  if (!g->in_sentence) return 0;
  if (g->star) {
    uint8_t h = gga_hex(c);
    if (h == 0xff) { g->in_sentence = 0; return 0; }
    g->expect_sum = (uint8_t)(g->expect_sum << 4 | h);
    if (++g->star_digits < 2) return 0;
    g->in_sentence = 0;
    if (g->expect_sum != g->sum || !g->is_gga || g->quality == 0) return 0;
    g->fix.latitude = g->lat;
    g->fix.longitude = g->lon;
    g->fix.altitude_m = g->alt;
    g->fix.valid = 1;
    return 1;
  }
  if (c == '*') {
    gga_field(g);
    g->star = 1; g->star_digits = 0; g->expect_sum = 0;
    return 0;
  }
  if (c == '\r' || c == '\n') { g->in_sentence = 0; return 0; }
  g->sum ^= (uint8_t)c;
  if (c == ',') { gga_field(g); return 0; }
  if (g->len < sizeof g->buf) g->buf[g->len++] = c;
  else g->in_sentence = 0; /* no GGA field is this long */
  return 0;
}

#endif
