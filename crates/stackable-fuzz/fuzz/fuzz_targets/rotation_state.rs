#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = stackable_fuzz::targets::secret::rotation_state(data);
});
