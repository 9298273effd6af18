// Declarations of the MCCI LMIC API the sketch uses, and nothing else, so CI
// can compile our own firmware code for the ATmega328P without the library
// (tests/firmware.rs). The configuration is the real one the sketch ships
// with. firmware/build-uno.sh builds against the real library.
#ifndef LMIC_STUB_H
#define LMIC_STUB_H
#include <stdint.h>
#include "../../lmic_project_config.h"

typedef uint8_t u1_t;
typedef int8_t s1_t;
typedef uint16_t u2_t;
typedef uint32_t u4_t;
typedef int32_t s4_t;
typedef s4_t ostime_t;
typedef u1_t dr_t;
typedef u1_t ev_t;

struct osjob_t;
typedef void (*osjobcb_t)(struct osjob_t *);
struct osjob_t {
  struct osjob_t *next;
  ostime_t deadline;
  osjobcb_t func;
};

enum { EV_JOINED = 6, EV_TXCOMPLETE = 10 };
enum { OP_TXRXPEND = 0x0080 };
enum { BAND_CENTI = 1 };
enum { MAX_CLOCK_ERROR = 65535 };
enum { DR_SF12 = 0, DR_SF11, DR_SF10, DR_SF9, DR_SF8, DR_SF7, DR_SF7B, DR_FSK };
#define DR_RANGE_MAP(drlo, drhi) ((u2_t)((u2_t)(drlo) | ((u2_t)(drhi) << 4)))
#define LMIC_UNUSED_PIN 0xff

struct lmic_t {
  u2_t opmode;
  u1_t dataLen;
  u1_t dataBeg;
  u1_t frame[64];
  u1_t rxDelay;
  u1_t rx1DrOffset;
  u4_t dn2Freq;
  u1_t dn2Dr;
};
extern struct lmic_t LMIC;

void os_init(void);
void os_runloop_once(void);
ostime_t os_getTime(void);
void os_setTimedCallback(osjob_t *job, ostime_t time, osjobcb_t cb);
#define sec2osticks(sec) ((ostime_t)(sec) * 62500)

void LMIC_reset(void);
void LMIC_setSession(u4_t netid, u4_t devaddr, u1_t *nwkKey, u1_t *artKey);
int LMIC_setupChannel(u1_t channel, u4_t freq, u2_t drmap, s1_t band);
void LMIC_setLinkCheckMode(u1_t enabled);
void LMIC_setClockError(u2_t error);
void LMIC_setDrTxpow(dr_t dr, s1_t txpow);
int LMIC_setTxData2(u1_t port, u1_t *data, u1_t dlen, u1_t confirmed);
#endif
