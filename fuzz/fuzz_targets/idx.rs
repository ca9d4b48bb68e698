//! The IDX reader, raw (with and without a known file length) and through gzip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scratchnet::data::idx::{parse_idx, IMAGES_MAGIC, LABELS_MAGIC};

fuzz_target!(|data: &[u8]| {
    let _ = parse_idx(&mut &data[..], IMAGES_MAGIC, Some(data.len() as u64));
    let _ = parse_idx(&mut &data[..], LABELS_MAGIC, None);
    let _ = parse_idx(
        &mut flate2::read::MultiGzDecoder::new(data),
        IMAGES_MAGIC,
        None,
    );
});
