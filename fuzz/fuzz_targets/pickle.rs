//! The restricted pickle reader, raw and through gzip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scratchnet::data::pickle::parse_mnist_pickle;

fuzz_target!(|data: &[u8]| {
    let _ = parse_mnist_pickle(&mut &data[..]);
    let _ = parse_mnist_pickle(&mut flate2::read::MultiGzDecoder::new(data));
});
