//! `train`: arrays in, a trained Model out, on a pool like the command
//! line's while the caller watches for Ctrl-C.

use crate::arrays::{images, labels, Images};
use crate::model::PyModel;
use crate::{pool, py_error, record, thread_count, to_json};
use anyhow::Context;
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyRuntimeError, PyTypeError, PyUserWarning, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};
use scratchnet::backend::Target;
use scratchnet::data::image_prep::SIDE;
use scratchnet::data::{Dataset, Split, CLASSES};
use scratchnet::tensorboard::Board;
use scratchnet::train::{
    EvalRecord, Look, Observer, Observers, Outcome, RunControl, Spelling, TrainConfig, Trainer,
};
use scratchnet::units;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the waiting caller looks for Ctrl-C (Python runs signal
/// handlers only on its main thread, which waits while a pool trains).
const SIGNAL_POLL: Duration = Duration::from_millis(10);

/// How often the progress callback hears of the steps done.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Hands each evaluation to the Python callback; stops the run when the
/// callback returns False or raises.
struct Callback<'a> {
    callback: Option<&'a Py<PyAny>>,
    /// `look(iter, [(label, picture)])`: the first layer's branches as RGB
    /// pictures (`units::grids`), at each evaluation.
    look: Option<&'a Py<PyAny>>,
    stop: &'a AtomicBool,
    error: Option<PyErr>,
    records: Vec<EvalRecord>,
    steps: &'a Steps,
}

/// The steps done, the total and the last step's loss, for the progress
/// callback, which the waiting main thread calls.
#[derive(Default)]
struct Steps {
    done: AtomicUsize,
    total: AtomicUsize,
    loss: AtomicU64,
}

impl Steps {
    fn get(&self) -> (usize, usize, f64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            f64::from_bits(self.loss.load(Ordering::Relaxed)),
        )
    }
}

impl Observer for Callback<'_> {
    fn step(&mut self, done: usize, total: usize, loss: f64) {
        self.steps.loss.store(loss.to_bits(), Ordering::Relaxed);
        self.steps.total.store(total, Ordering::Relaxed);
        self.steps.done.store(done, Ordering::Relaxed);
    }

    fn eval(&mut self, r: &EvalRecord) -> anyhow::Result<()> {
        self.records.push(r.clone());
        let Some(cb) = self.callback else {
            return Ok(());
        };
        let answer = Python::attach(|py| -> PyResult<bool> {
            let ret = cb.call1(py, (record(py, r)?,))?;
            let ret = ret.bind(py);
            // Only False stops (print, for one, returns None).
            Ok(!ret.is_instance_of::<PyBool>() || ret.extract::<bool>()?)
        });
        match answer {
            Ok(true) => {}
            Ok(false) => self.stop.store(true, Ordering::SeqCst),
            Err(e) => self.failed(e),
        }
        Ok(())
    }

    fn looks(&self) -> bool {
        self.look.is_some()
    }

    fn look(&mut self, look: &Look<'_>) -> anyhow::Result<()> {
        let (Some(cb), Some(grids)) = (self.look, units::grids(look.layout, look.params)) else {
            return Ok(());
        };
        let called = Python::attach(|py| -> PyResult<()> {
            let mut pictures = Vec::new();
            for g in grids {
                let rgb = PyArray1::from_vec(py, g.rgb).reshape([g.height, g.width, 3])?;
                pictures.push((g.label, rgb));
            }
            cb.call1(py, (look.record.iter, pictures)).map(drop)
        });
        if let Err(e) = called {
            self.failed(e);
        }
        Ok(())
    }
}

impl Callback<'_> {
    /// A Python callback raised: the run stops, the error is raised after.
    fn failed(&mut self, e: PyErr) {
        self.error = Some(e);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A split from optional arrays (empty when not given).
fn split(
    x: Option<&Bound<'_, PyAny>>,
    y: Option<&Bound<'_, PyAny>>,
    names: (&str, &str),
    like: &Images,
) -> PyResult<Split> {
    match (x, y) {
        (None, None) => Ok(Split {
            images: Default::default(),
            labels: Vec::new(),
            features: like.features,
        }),
        (Some(x), Some(y)) => {
            let im = images(names.0, x)?;
            if im.features != like.features {
                return Err(PyValueError::new_err(format!(
                    "{}: images of {} pixels, but X has {}",
                    names.0, im.features, like.features
                )));
            }
            let labels = labels(names.1, y, im.count)?;
            Ok(Split {
                images: im.pixels.into(),
                labels,
                features: im.features,
            })
        }
        _ => Err(PyValueError::new_err(format!(
            "{} and {} go together: give both or neither",
            names.0, names.1
        ))),
    }
}

/// Trains a network and returns the Model. `preset` is "fast" (the default),
/// "best" or "seed"; `options` are the command line's training options by
/// their configuration names (lr, epochs, iters, batch_size, optimizer, l2,
/// keep, dropout, shift, rotate, arch, seed, precision, keep_best,
/// patience, ...).
/// `callback(metrics)` receives each evaluation as a dict and stops the run
/// by returning False; `look(iter, pictures)` the first layer's branches as
/// `(label, uint8 array [height, width, 3])` pairs (red positive weights,
/// blue negative). The option `tensorboard` names a folder for
/// TensorBoard's event files.
/// `progress(done, total, loss)`, where given, is called
/// from the calling thread about every 0.1 s while steps are done, and once
/// at the end. Ctrl-C stops within a step and raises KeyboardInterrupt,
/// whose `model` attribute holds the model as of the last finished step.
#[pyfunction]
#[pyo3(signature = (X, y, X_val=None, y_val=None, *, X_test=None, y_test=None, preset=None, threads=None, callback=None, progress=None, look=None, **options))]
#[allow(non_snake_case, clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    X: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    X_val: Option<&Bound<'_, PyAny>>,
    y_val: Option<&Bound<'_, PyAny>>,
    X_test: Option<&Bound<'_, PyAny>>,
    y_test: Option<&Bound<'_, PyAny>>,
    preset: Option<String>,
    threads: Option<usize>,
    callback: Option<Py<PyAny>>,
    progress: Option<Py<PyAny>>,
    look: Option<Py<PyAny>>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<PyModel> {
    let threads = thread_count(threads)?;
    let cfg = config("train", preset, options)?;
    let data = dataset([X, y], [X_val, y_val], [X_test, y_test])?;
    if let Some(dir) = &cfg.tensorboard {
        scratchnet::fsutil::check_folder("tensorboard", Path::new(dir)).map_err(py_error)?;
    }
    run(py, cfg, &data, threads, [callback, progress, look])
}

/// The configuration a preset and the command line's options by their
/// configuration names make; `caller` names the function in errors.
fn config(
    caller: &str,
    preset: Option<String>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<TrainConfig> {
    let mut overrides = serde_json::Map::new();
    if let Some(p) = preset {
        overrides.insert("preset".into(), p.into());
    }
    let known = TrainConfig::option_names();
    for (k, v) in options.into_iter().flatten() {
        let k: String = k.extract()?;
        if !known.contains(&k) {
            return Err(PyTypeError::new_err(format!(
                "{caller}() got an unexpected keyword argument '{k}'{}",
                scratchnet::train::options::nearest(&k, Spelling::Keyword)
            )));
        }
        overrides.insert(k.clone(), to_json(&k, &v)?);
    }
    TrainConfig::resolve(None, overrides.into()).map_err(py_error)
}

/// How many L2 factors (one per weight matrix) and keep probabilities (one
/// per hidden branch) the network of a preset and options takes, as
/// `{"l2": n, "keep": m}`: the dimensions of a search over them.
#[pyfunction]
#[pyo3(signature = (preset=None, **options))]
pub fn factor_counts(
    preset: Option<String>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<BTreeMap<&'static str, usize>> {
    let cfg = config("factor_counts", preset, options)?;
    let arch = cfg.arch(SIDE * SIDE, CLASSES).map_err(py_error)?;
    Ok(BTreeMap::from([
        ("l2", arch.weight_matrices()),
        ("keep", arch.hidden_branches()),
    ]))
}

/// The splits as the trainer takes them.
fn dataset(
    [x, y]: [&Bound<'_, PyAny>; 2],
    [x_val, y_val]: [Option<&Bound<'_, PyAny>>; 2],
    [x_test, y_test]: [Option<&Bound<'_, PyAny>>; 2],
) -> PyResult<Dataset> {
    let train = images("X", x)?;
    let train_labels = labels("y", y, train.count)?;
    let val = split(x_val, y_val, ("X_val", "y_val"), &train)?;
    let test = split(x_test, y_test, ("X_test", "y_test"), &train)?;
    Ok(Dataset {
        shape: train.shape,
        train: Split {
            images: train.pixels.into(),
            labels: train_labels,
            features: train.features,
        },
        val,
        test,
        checksums: Vec::new(),
    })
}

/// Trains on a pool of `threads` while the calling (main) thread waits,
/// looking for Ctrl-C.
fn run(
    py: Python<'_>,
    cfg: TrainConfig,
    data: &Dataset,
    threads: usize,
    [callback, progress, look]: [Option<Py<PyAny>>; 3],
) -> PyResult<PyModel> {
    let stop = AtomicBool::new(false);
    let steps = Steps::default();
    let pool = pool(threads)?;
    let lr = cfg.lr;
    let (result, signal) = py.detach(|| {
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                pool.install(|| -> anyhow::Result<_> {
                    let mut t = Trainer::new(cfg, data, Target::cpu(threads), None)?;
                    // Made once the run is sure to start: no file of settings alone.
                    let mut board = match &t.cfg.tensorboard {
                        Some(dir) => {
                            Some(Board::create(Path::new(dir), &t.cfg).context("tensorboard")?)
                        }
                        None => None,
                    };
                    let mut obs = Callback {
                        callback: callback.as_ref(),
                        look: look.as_ref(),
                        stop: &stop,
                        error: None,
                        records: Vec::new(),
                        steps: &steps,
                    };
                    let ctl = RunControl {
                        interrupt: Some(&stop),
                        ..RunControl::default()
                    };
                    let mut all: Vec<&mut dyn Observer> = vec![&mut obs];
                    all.extend(board.as_mut().map(|b| b as &mut dyn Observer));
                    let outcome = t.run(&mut Observers(all), &ctl);
                    let model = match &outcome {
                        Ok(_) => Some(t.trained_model()?),
                        Err(_) => None,
                    };
                    Ok((outcome, model, obs, board))
                })
            });
            let (mut signal, mut shown, mut last) = (None, None, Instant::now());
            let mut show = |force: bool| -> PyResult<()> {
                let now = steps.get();
                let Some(p) = progress.as_ref() else {
                    return Ok(());
                };
                // Nothing to show before the first step reports the total.
                let early = !force && last.elapsed() < PROGRESS_EVERY;
                if now.1 == 0 || shown == Some(now.0) || early {
                    return Ok(());
                }
                (shown, last) = (Some(now.0), Instant::now());
                Python::attach(|py| p.call1(py, now).map(drop))
            };
            while !worker.is_finished() {
                std::thread::park_timeout(SIGNAL_POLL);
                if signal.is_none() {
                    let checked = Python::attach(|py| py.check_signals()).and_then(|_| show(false));
                    if let Err(e) = checked {
                        signal = Some(e);
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            if signal.is_none() {
                signal = show(true).err();
            }
            (worker.join(), signal)
        })
    });
    let (outcome, model, obs, board) = match result {
        Ok(r) => r.map_err(py_error)?,
        Err(_) => return Err(PyRuntimeError::new_err("training panicked")),
    };
    if let Some(e) = obs.error {
        return Err(e);
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return Err(match e.downcast_ref::<scratchnet::train::Diverged>() {
                Some(_) => PyRuntimeError::new_err(format!("{e:#}")),
                None => py_error(e),
            })
        }
    };
    let warn = |w: String| -> PyResult<()> {
        let category = py.get_type::<PyUserWarning>();
        PyErr::warn(py, &category, &std::ffi::CString::new(w)?, 1)
    };
    if let Some(e) = board.as_ref().and_then(|b| b.failure()) {
        warn(format!("{e:#}; TensorBoard events stopped being written"))?;
    }
    if let Outcome::Finished(s) = &outcome {
        let classes = model.as_ref().map_or(10, |m| m.layout.arch.classes);
        if let Some(w) = s.near_chance(classes, lr) {
            warn(w)?;
        }
    }
    let model = PyModel {
        model: model.expect("made after a run that did not fail"),
        records: obs.records,
    };
    match signal {
        Some(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => {
            e.value(py).setattr("model", Py::new(py, model)?)?;
            Err(e)
        }
        Some(e) => Err(e),
        None => Ok(model),
    }
}
