/*
 * A DHT22 (AM2302) reader that decodes each bit as it arrives. The Adafruit
 * DHT library first records all 80 pulse timings (uint32_t[80]: 320 bytes
 * of stack), which on an UNO running LMIC left no stack headroom at all;
 * this one needs a few bytes. The decoding of the five bytes is plain C++
 * (`dht22_decode`), compiled and tested on the host by tests/firmware.rs;
 * the pin timing is Arduino-only.
 *
 * Each bit is a ~50 us low followed by a high of ~27 us (0) or ~70 us (1):
 * the high is compared with the low before it, counted in loop iterations
 * like the Adafruit library does, so neither micros() nor the clock rate
 * matters (interrupts are off for the ~5 ms of the read).
 */
#ifndef DEVICE_LORAWAN_DHT22_H
#define DEVICE_LORAWAN_DHT22_H

#include <stdint.h>

struct Dht22Reading {
  float temperature_c;
  float humidity_pct;
};

/* The five bytes as the sensor sends them → a reading; 0 if the checksum
 * or a value is wrong. */
static inline uint8_t dht22_decode(const uint8_t d[5], Dht22Reading *out) {
  if ((uint8_t)(d[0] + d[1] + d[2] + d[3]) != d[4]) return 0;
  uint16_t rh = (uint16_t)(d[0] << 8 | d[1]);
  uint16_t t = (uint16_t)((d[2] & 0x7f) << 8 | d[3]);
  if (rh > 1000 || t > 800) return 0;
  out->humidity_pct = rh * 0.1f;
  out->temperature_c = (d[2] & 0x80) ? -(t * 0.1f) : t * 0.1f;
  return 1;
}

#ifdef ARDUINO
#include <Arduino.h>

/* Iterations while the pin stays at `level`, or 0 after about 1 ms. */
static inline uint16_t dht22_pulse(uint8_t bit, volatile uint8_t *in, uint8_t level) {
  uint16_t n = 0;
  while (((*in & bit) ? 1 : 0) == level) {
    if (++n == 0 || n > (uint16_t)microsecondsToClockCycles(1000) / 8) return 0;
  }
  return n;
}

static uint8_t dht22_read(uint8_t pin, Dht22Reading *out) {
  uint8_t bit = digitalPinToBitMask(pin);
  volatile uint8_t *in = portInputRegister(digitalPinToPort(pin));
  uint8_t d[5] = {0, 0, 0, 0, 0};
  pinMode(pin, INPUT_PULLUP);
  delay(1);
  pinMode(pin, OUTPUT); /* start: at least 1 ms low (DHT22 datasheet) */
  digitalWrite(pin, LOW);
  delay(2);
  uint8_t ok = 1;
  noInterrupts();
  pinMode(pin, INPUT_PULLUP);
  delayMicroseconds(55);
  /* The sensor answers 80 us low, 80 us high. */
  if (!dht22_pulse(bit, in, 0) || !dht22_pulse(bit, in, 1)) ok = 0;
  for (uint8_t i = 0; ok && i < 40; i++) {
    uint16_t low = dht22_pulse(bit, in, 0);
    uint16_t high = dht22_pulse(bit, in, 1);
    if (!low || !high) ok = 0;
    d[i / 8] = (uint8_t)(d[i / 8] << 1 | (high > low ? 1 : 0));
  }
  interrupts();
  return ok && dht22_decode(d, out);
}
#endif

#endif
