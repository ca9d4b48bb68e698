//! Helpers shared by the integration tests: those of this package
//! (`tests/it/`, `tests/gpu*.rs`) and those of `slow-tests/`, which reach the
//! binary and the repository through [`bin`] and [`root`].
#![allow(dead_code)]

mod mirror;
#[allow(unused_imports)] // Not every test file fetches.
pub use mirror::Mirror;

use scratchnet::backend::Target;
use scratchnet::data::Dataset;
use scratchnet::train::{EvalRecord, Observer, Outcome, RunControl, Summary, TrainConfig, Trainer};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository's root (`slow-tests/` sits one folder below it).
pub fn root() -> &'static Path {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("data/mnist").is_dir() {
        here
    } else {
        here.parent().expect("slow-tests/ sits in the repository")
    }
}

/// The `scratchnet` binary: cargo's for this package's tests; for
/// `slow-tests/`, the release build beside the test binary, which
/// `cargo build --release` makes.
pub fn bin() -> PathBuf {
    if let Some(b) = option_env!("CARGO_BIN_EXE_scratchnet") {
        return b.into();
    }
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let b = deps.parent().unwrap().join("scratchnet");
    assert!(
        b.is_file(),
        "{} is missing: build it first (cargo build --release)",
        b.display()
    );
    b
}

/// `scratchnet ARGS`, run in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `scratchnet ARGS` in `dir`, which must fail, without a panic, with each
/// of `needles` on stderr; returns stderr.
pub fn fails_in(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let out = run_in(dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected `{n}` in: {err}");
    }
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

/// Skips the calling test for `reason`, something a development machine may
/// lack (a file under `../shared`, the right to mount a tmpfs). Under CI
/// (`CI` set) nothing may be missing, so the test fails instead of passing
/// unchecked.
pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {reason}; CI is set, so this check must run");
    }
    skipped(test, reason);
}

/// Records that `test` skipped its checks for `reason`, something CI may
/// lack too (a GPU): on stderr, and as a line of the skip log
/// (`$SCRATCHNET_SKIP_LOG`), which `.ci/run` prints at its end, since the
/// test harness keeps a passing test's output to itself.
pub fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    // Straight to the terminal: the harness would hold back an `eprintln!`
    // of a test that passes, and a skip must show.
    let _ = writeln!(std::io::stderr(), "skipped {test}: {reason}");
    if let Some(path) = std::env::var_os("SCRATCHNET_SKIP_LOG") {
        let line = format!("{test}: {reason}\n");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        // One write per line, so lines from tests running at once do not mix.
        if let Err(e) = log.and_then(|mut f| f.write_all(line.as_bytes())) {
            eprintln!(
                "cannot append to the skip log {}: {e}",
                path.to_string_lossy()
            );
        }
    }
}

/// Records each step's loss as the trainer reports it, and every
/// evaluation: the tests' one observer.
#[derive(Default)]
pub struct Log {
    pub losses: Vec<f64>,
    pub evals: Vec<EvalRecord>,
}

impl Observer for Log {
    fn step(&mut self, _done: usize, _total: usize, loss: f64) {
        self.losses.push(loss);
    }

    fn eval(&mut self, r: &EvalRecord) -> anyhow::Result<()> {
        self.evals.push(r.clone());
        Ok(())
    }
}

/// Runs `t` to its last step (no checkpoints, no interruption): the summary
/// and every evaluation.
pub fn finish(t: &mut Trainer<'_>) -> (Summary, Vec<EvalRecord>) {
    let ctl = RunControl::default();
    let mut log = Log::default();
    match t.run(&mut log, &ctl).unwrap() {
        Outcome::Finished(s) => (*s, log.evals),
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

    /// Mounts one for `test`, or skips it (a failure under CI).
    pub fn mount_for(test: &str, kib: usize) -> Option<Tmpfs> {
        let fs = Tmpfs::mount(kib);
        if fs.is_none() {
            skip(test, NO_TMPFS);
        }
        fs
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
        Dataset::load(&root().join("data/mnist"), Some(10_000))
            .expect("the bundled MNIST in data/mnist")
    })
}

/// A model of the default preset with `overrides` (e.g. `{"epochs": 1}`),
/// trained on the bundled MNIST and saved as `dir/m.safetensors`.
pub fn trained_model(dir: &Path, overrides: serde_json::Value) -> PathBuf {
    let cfg = TrainConfig::resolve(None, overrides).unwrap();
    let mut t = Trainer::new(cfg, mnist(), Target::cpu(2), None).unwrap();
    finish(&mut t);
    let path = dir.join("m.safetensors");
    t.trained_model().unwrap().save(&path).unwrap();
    path
}

/// `scratchnet predict --csv` of `model` on `images` (files or folders),
/// which must succeed: its standard output.
pub fn predict_csv(model: &Path, images: &[&Path]) -> String {
    let out = Command::new(bin())
        .args(["predict", "--csv", "--model"])
        .arg(model)
        .args(images)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "predict failed: {err}");
    String::from_utf8(out.stdout).unwrap()
}

/// A server of a model trained for two epochs, on a free port.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The model it serves.
    pub model: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts a `serve` command and returns it with the address its first
/// line names; then the reader goes away, as a terminal may, and the
/// server must go on.
pub fn serving(cmd: &mut Command) -> (Child, String) {
    let (child, url, _) = addressed(cmd);
    (child, url)
}

/// Starts a `train --watch` command and returns it with its page's address
/// (its first line, with `-q`); the rest of its output is read and dropped.
pub fn watching(cmd: &mut Command) -> (Child, String) {
    let (child, url, mut out) = addressed(cmd);
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, url)
}

/// Starts `cmd`: the process, the address its first line names (without a
/// trailing `/`), and the rest of its output.
fn addressed(cmd: &mut Command) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (child, url, out)
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let model = trained_model(dir.path(), serde_json::json!({"epochs": 2}));
        let (child, url) = serving(
            Command::new(bin())
                .args(["serve", "--addr", "127.0.0.1:0", "--model"])
                .arg(&model)
                .arg("--data")
                .arg(root().join("data/mnist"))
                .args(extra),
        );
        Server {
            child,
            url,
            model,
            _dir: dir,
        }
    }

    /// Sends a request; the status and the JSON answer.
    pub fn call(&self, method: &str, path: &str, kind: Option<&str>, body: &[u8]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let mut resp = match (method, kind) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            (_, Some(kind)) => agent.post(&url).header("Content-Type", kind).send(body),
            _ => agent.post(&url).send(body),
        }
        .unwrap_or_else(|e| panic!("{method} {path} ({} bytes): {e}", body.len()));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, value)
    }

    pub fn healthy(&self) {
        assert_eq!(self.call("GET", "/healthz", None, b"").0, 200);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests` of this test binary again under each other kernel family
/// this machine has (`SCRATCHNET_KERNELS`, chosen once per process, hence
/// a process each): the plain run covers the family the machine chooses,
/// these the rest. A family the CPU lacks is a recorded skip.
pub fn on_the_other_kernel_families(test: &str, tests: &[&str]) {
    on_other_families(test, tests, |_| None)
}

/// [`on_the_other_kernel_families`], but not on the portable family: it
/// multiplies and adds through software FMA (for the same bits as the
/// others on a CPU without FMA), which makes a training test many times slower.
/// Its kernels give the others' bits (`kernels::every_kernel_family_gives_the_same_bits`),
/// and it trains as natively under emulation (`emulated::`).
pub fn on_the_other_fma_families(test: &str, tests: &[&str]) {
    use scratchnet::tensor::kernels::Isa;
    on_other_families(test, tests, |k| {
        (k.isa() == Isa::Baseline).then_some(
            "the portable kernels: their bits are checked by kernels::every_kernel_family_gives_the_same_bits, their training by emulated::",
        )
    })
}

/// Runs `tests` under each other family, but those `skip` gives a reason for.
fn on_other_families(
    test: &str,
    tests: &[&str],
    skip: impl Fn(scratchnet::tensor::kernels::Kernels) -> Option<&'static str>,
) {
    use scratchnet::tensor::kernels::{Kernels, KERNELS_ENV};
    let chosen = Kernels::current();
    for k in Kernels::ALL.into_iter().filter(|&k| k != chosen) {
        if !k.available() {
            skipped(
                test,
                &format!("this machine cannot run the {} kernels", k.name()),
            );
            continue;
        }
        if let Some(why) = skip(k) {
            skipped(test, why);
            continue;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args(tests)
            .args(["--exact", "--test-threads", "1"])
            .env(KERNELS_ENV, k.name())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        let all = format!("test result: ok. {} passed", tests.len());
        assert!(
            out.status.success() && log.contains(&all),
            "{test}: expected {} tests to pass on the {} kernels\n{log}{}",
            tests.len(),
            k.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{test}: {} kernels: {} passed", k.name(), tests.len());
    }
}
