//! Training: configuration and presets, the loop, checkpoints, metrics and
//! model selection.

pub mod checkpoint;
pub mod config;
pub mod launch;
pub mod metrics;
pub mod options;
pub mod outputs;
pub mod replay;
pub mod selection;
pub mod trainer;

pub use checkpoint::{Checkpoint, CHECKPOINT_KEY, CONFIG_KEY};
pub use config::{BatchSize, Preset, SettingError, Spelling, TrainConfig};
pub use launch::{Launch, Request};
pub use metrics::{EvalRecord, MetricsWriter};
pub use outputs::Outputs;
pub use replay::Replay;
pub use selection::Best;
pub use trainer::{
    Diverged, Look, Observer, Observers, Outcome, RunControl, Summary, Trainer, METRICS_KEY,
    SELECTION_KEY,
};
