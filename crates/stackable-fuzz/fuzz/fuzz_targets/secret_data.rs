#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = stackable_fuzz::targets::secret::secret_data(data);
});
