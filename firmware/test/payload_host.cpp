// Host harness for firmware/lorawan-mote/payload.h: encodes fixed readings
// and prints one line per case: "<kind> <hex payload>", then downlink results.
#include <cstdio>
#include "../lorawan-mote/payload.h"

static void hex(const char *kind, const uint8_t *b, size_t n) {
  printf("%s ", kind);
  for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
  printf("\n");
}

int main() {
  const MoteReading cases[] = {
      {21.5f, 48.5f, 51.5072f, -0.1276f, 35.2f, 3.71f, 1, 5},
      {-12.3f, 99.0f, -33.8688f, 151.2093f, -5.5f, 2.95f, 0, 0},
  };
  uint8_t buf[64];
  for (const MoteReading &r : cases) {
    hex("lpp", buf, encode_lpp(&r, buf, sizeof buf));
    hex("layout", buf, encode_layout(&r, buf, sizeof buf));
  }
  uint16_t interval = 60;
  const uint8_t ok[] = {0x01, 0x2c}, too_small[] = {0x00, 0x05};
  int applied = apply_downlink(2, ok, 2, &interval);
  printf("downlink %d %u\n", applied, interval);
  applied = apply_downlink(2, too_small, 2, &interval);
  printf("downlink %d %u\n", applied, interval);
  applied = apply_downlink(1, ok, 2, &interval);
  printf("downlink %d %u\n", applied, interval);
  return 0;
}
