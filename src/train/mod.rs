//! Training: configuration and presets, the loop, and its metrics.

pub mod config;
pub mod metrics;
pub mod trainer;

pub use config::{BatchSize, TrainConfig};
pub use metrics::{EvalRecord, MetricsWriter};
pub use trainer::{Observer, Outcome, RunControl, Summary, Trainer};
