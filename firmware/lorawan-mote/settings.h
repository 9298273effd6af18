// Settings of the device-lorawan mote `mote-1`, written by
//   device-lorawan sketch-settings --device mote-1
// from the devices file and the service's Downlink defaults, so the mote
// listens exactly where the service sends. It holds the session keys: for a
// real mote, keep it out of version control.
#ifndef LORAWAN_MOTE_SETTINGS_H
#define LORAWAN_MOTE_SETTINGS_H

#define MOTE_NAME "mote-1"
// ABP session, MSB first as printed in the devices file.
#define MOTE_DEVADDR 0x26011bdaUL
#define MOTE_NWKSKEY { 0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c }
#define MOTE_APPSKEY { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f }

// Receive windows (LMIC rxDelay, rx1DrOffset, dn2Freq, dn2Dr).
#define MOTE_RX1_DELAY_S 1
#define MOTE_RX1_DR_OFFSET 0
#define MOTE_RX2_FREQUENCY_HZ 869525000UL
#define MOTE_RX2_DR DR_SF12  // SF12BW125

#endif
