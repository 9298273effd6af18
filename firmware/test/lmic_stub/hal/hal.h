// The LMIC HAL's pin map type, as the sketch uses it (see ../lmic.h).
#ifndef LMIC_STUB_HAL_H
#define LMIC_STUB_HAL_H
#include <stdint.h>
struct lmic_pinmap {
  uint8_t nss;
  uint8_t rxtx;
  uint8_t rst;
  uint8_t dio[3];
};
#endif
