#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| device_lorawan::fuzzing::run("application_json", data));
