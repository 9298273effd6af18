// MCCI LoRaWAN LMIC configuration for the device-lorawan mote: Arduino UNO
// (ATmega328P: 32 KiB flash, 2 KiB RAM) + Dragino LoRa/GPS shield (SX1276),
// EU868, ABP, class A. Copy it over the library's
// project_config/lmic_project_config.h (firmware/build-uno.sh passes it
// with ARDUINO_LMIC_PROJECT_CONFIG_H instead). With the library's own
// configuration the sketch does not fit the UNO. What each line buys,
// measured by firmware/build-uno.sh (see README "The mote firmware"):
#define CFG_eu868 1
#define CFG_sx1276_radio 1

// Class A only: no class B ping slots or beacon tracking.
#define DISABLE_PING
#define DISABLE_BEACONS
// DISABLE_JOIN would drop the join code we do not use (ABP), but MCCI LMIC
// 6.0.1 then fails to link (radioGetRxResults is defined inside the join
// code): left out.
// Frames up to 64 bytes (ours are 13 + 22; downlinks are a few bytes): the
// LMIC frame buffers shrink from 255 bytes.
#define LMIC_MAX_FRAME_LENGTH 64
// No network time (DeviceTimeReq).
#define LMIC_ENABLE_DeviceTimeReq 0
// No internal assertions: each one keeps its source file's full path as a
// string in RAM (.data), so with them the RAM used grows with the length of
// the path the library is installed at (120 bytes more from a temporary
// directory than from ~/Arduino/libraries). A failed assertion would only
// have halted the mote anyway.
#define CFG_noassert 1
#define DISABLE_LMIC_FAILURE_TO
#define LMIC_DEBUG_LEVEL 0
