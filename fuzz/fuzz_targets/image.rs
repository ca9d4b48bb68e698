//! The image loader and preparation used by `predict`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scratchnet::data::image_prep::digit_from_bytes;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = digit_from_bytes(data) {
        assert_eq!(d.len(), 28 * 28);
        assert!(d.iter().all(|v| (0.0..=1.0).contains(v)));
    }
});
