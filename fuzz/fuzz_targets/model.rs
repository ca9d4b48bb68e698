//! The model-file reader (safetensors plus scratchnet's metadata).
#![no_main]
use libfuzzer_sys::fuzz_target;
use scratchnet::model_io::Model;

fuzz_target!(|data: &[u8]| {
    let _ = Model::from_bytes(data);
});
