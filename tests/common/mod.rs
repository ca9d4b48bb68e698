//! Helpers shared by the integration tests (each test file uses some).
#![allow(dead_code)]

use scratchnet::backend::Target;
use scratchnet::data::Dataset;
use scratchnet::train::{EvalRecord, Observer, Outcome, RunControl, Summary, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Skips the calling test for `reason`, something a development machine may
/// lack (a file under `../shared`, the right to mount a tmpfs). Under CI
/// (`CI` set) nothing may be missing, so the test fails instead of passing
/// unchecked.
pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {reason}; CI is set, so this check must run");
    }
    eprintln!("skipped {test}: {reason}");
}

/// Records every evaluation.
#[derive(Default)]
struct Log(Vec<EvalRecord>);

impl Observer for Log {
    fn eval(&mut self, r: &EvalRecord) -> anyhow::Result<()> {
        self.0.push(r.clone());
        Ok(())
    }
}

/// Runs `t` to its last step (no checkpoints, no interruption): the summary
/// and every evaluation.
pub fn finish(t: &mut Trainer<'_>) -> (Summary, Vec<EvalRecord>) {
    let ctl = RunControl {
        checkpoint_every: None,
        checkpoint_path: "unused".into(),
        interrupt: None,
    };
    let mut log = Log::default();
    match t.run(&mut log, &ctl).unwrap() {
        Outcome::Finished(s) => (s, log.0),
        other => panic!("run ended early: {other:?}"),
    }
}

/// Why a test that needs a tmpfs could not have one.
pub const NO_TMPFS: &str = "cannot mount a tmpfs here (needs root)";

/// A small tmpfs (a disk that fills, or is made read-only), unmounted when
/// dropped; `None` where mounting is not allowed.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    pub fn mount(kib: usize) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then_some(Tmpfs(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Remounts it read-only.
    pub fn read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot remount {} read-only", self.path().display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

/// The bundled MNIST, loaded once per test binary.
pub fn mnist() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        Dataset::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
            Some(10_000),
        )
        .expect("the bundled MNIST in data/mnist")
    })
}

/// A model of the default preset with `overrides` (e.g. `{"epochs": 1}`),
/// trained on the bundled MNIST and saved as `dir/m.safetensors`.
pub fn trained_model(dir: &Path, overrides: serde_json::Value) -> PathBuf {
    let cfg = TrainConfig::resolve(None, overrides).unwrap();
    let mut t = Trainer::new(cfg, mnist(), Target::cpu(2), None).unwrap();
    let (s, _) = finish(&mut t);
    let mut meta = std::collections::BTreeMap::new();
    meta.insert(
        "scratchnet.metrics".to_string(),
        serde_json::to_string(&s.last).unwrap(),
    );
    let path = dir.join("m.safetensors");
    t.model(meta).unwrap().save(&path).unwrap();
    path
}
