//! scratchnet's integration tests, one binary (one link) with a module per
//! subject. `cargo test --release` runs the fast ones; the slow suites are
//! `#[ignore]`d with the reason and run by `.ci/run` as their own steps
//! (docs/TESTING.md): `cargo test --release --test it -- --ignored NAME`.

mod common;

mod cli;
mod download;
mod emulated;
mod golden;
mod gradients;
mod install;
mod kernels;
mod messages;
mod outputs;
mod photos;
mod predict;
mod readers;
mod readme;
mod robustness;
mod serve;
mod tensorboard;
mod training;
mod watch;
