#!/usr/bin/env bash
# Build the mote sketch for an Arduino UNO as the Arduino IDE does
# (arduino-builder, Debian's AVR toolchain and Arduino AVR core), with
# firmware/lmic_project_config.h, and print flash, RAM and the worst-case
# stack against the ATmega328P's limits. Fails if the sketch does not fit or
# leaves less than 300 bytes of stack headroom.
#
#   firmware/build-uno.sh /path/to/arduino-lmic [--layout] [--settings FILE]
#
# --settings builds with another settings.h (an OTAA device's, from
# `device-lorawan sketch-settings`) instead of the committed one.
#
# The LMIC checkout is MCCI's arduino-lmic (github.com/mcci-catena/arduino-lmic);
# nothing else outside Debian is needed (the DHT22 and GPS readers are ours).
# Needs: apt-get install arduino-builder arduino-core-avr gcc-avr avr-libc python3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lmic="${1:?usage: $0 /path/to/arduino-lmic [--layout] [--settings FILE]}"
lmic="$(cd "$lmic" && pwd)"
[ -f "$lmic/library.properties" ] || { echo "$lmic: not an Arduino library (no library.properties)" >&2; exit 2; }
shift
extra=""
settings=""
while [ $# -gt 0 ]; do
  case "$1" in
    --layout) extra="-DPAYLOAD_LAYOUT" ;;
    --settings) settings="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
for tool in arduino-builder avr-size python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install arduino-builder arduino-core-avr gcc-avr avr-libc python3" >&2; exit 2; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/libraries" "$work/build"
sketch="$here/lorawan-mote"
if [ -n "$settings" ]; then
  cp -r "$here/lorawan-mote" "$work/lorawan-mote"
  cp "$settings" "$work/lorawan-mote/settings.h"
  sketch="$work/lorawan-mote"
fi
ln -s "$lmic" "$work/libraries/MCCI_LoRaWAN_LMIC_library"
config="-DARDUINO_LMIC_PROJECT_CONFIG_H=$here/lmic_project_config.h"
# Debian's Arduino core 1.8.7 reads DECIMAL_DIG, which its avr-gcc 5 gives to C only.
arduino-builder -compile -hardware /usr/share/arduino/hardware -hardware /usr/share/arduino-builder \
  -tools /usr/bin -libraries "$work/libraries" -fqbn arduino:avr:uno -build-path "$work/build" \
  -prefs "compiler.cpp.extra_flags=$config $extra -DDECIMAL_DIG=__DECIMAL_DIG__" \
  -prefs "compiler.c.extra_flags=$config" \
  "$sketch/lorawan-mote.ino" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
elf="$work/build/lorawan-mote.ino.elf"
size() { avr-size -A "$elf" | awk -v s="$1" '$1 == s { print $2 }'; }
text=$(size .text); data=$(size .data); bss=$(size .bss)
flash=$((text + data)); ram=$((data + bss))
stack_report="$(python3 "$here/avr_stack.py" "$elf")"
stack=$(sed -n 's/^worst-case stack: \([0-9]*\) bytes.*/\1/p' <<<"$stack_report")
flash_max=32256; ram_max=2048   # UNO: 32 KiB less the 512-byte bootloader; 2 KiB SRAM
headroom=$((ram_max - ram - stack))
version=$(sed -n 's/^version=//p' "$lmic/library.properties")
commit=$(git -C "$lmic" rev-parse --short HEAD 2>/dev/null || echo "no git")
echo "MCCI LMIC $version ($commit), arduino-builder $(dpkg-query -W -f='${Version}' arduino-builder 2>/dev/null), Arduino AVR core $(dpkg-query -W -f='${Version}' arduino-core-avr 2>/dev/null), $(avr-gcc --version | head -1)"
printf 'flash  %6d of %6d bytes (%d%%), %d free\n' "$flash" "$flash_max" $((100 * flash / flash_max)) $((flash_max - flash))
printf 'RAM    %6d of %6d bytes static (.data %d + .bss %d), %d left for the stack\n' "$ram" "$ram_max" "$data" "$bss" $((ram_max - ram))
printf 'stack  %6d bytes worst case; headroom %d bytes (at least 300 wanted)\n' "$stack" "$headroom"
echo "$stack_report" | sed 's/^/  /'
[ "$flash" -le "$flash_max" ] || { echo "does not fit the UNO's flash" >&2; exit 1; }
[ "$headroom" -ge 300 ] || { echo "less than 300 bytes of stack headroom" >&2; exit 1; }
