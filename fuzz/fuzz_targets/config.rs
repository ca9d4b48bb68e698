//! The configuration parser (`--config` TOML, then validation).
#![no_main]
use libfuzzer_sys::fuzz_target;
use scratchnet::train::TrainConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = TrainConfig::resolve(Some(("fuzzed.toml", text)), serde_json::json!({})) {
            if let Ok(arch) = cfg.arch(784, 10) {
                let _ = cfg.validate(&arch);
            }
        }
    }
});
