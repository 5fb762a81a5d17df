//! libFuzzer target: arbitrary bytes as config.json. `spec::validate` must
//! return an error for bad input, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = runtime::spec::validate(data);
});
