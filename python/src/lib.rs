//! scratchnet for Python: load MNIST as numpy arrays, train the notebook's
//! network from arrays, predict, evaluate, save and load models. A thin
//! layer over the library: the same trainer, backend and file format as the
//! command line, computing in the same kind of thread pool, so the same seed
//! and thread count give the same weights.

mod arrays;

use arrays::{images, labels, Images};
use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};
use scratchnet::backend::{logits, Target};
use scratchnet::data::download::Progress;
use scratchnet::data::locate::locate_or_fetch;
use scratchnet::data::{Dataset, Split, CLASSES};
use scratchnet::model_io::Model;
use scratchnet::nn::network::argmax;
use scratchnet::nn::softmax_ce::softmax_row;
use scratchnet::train::{EvalRecord, Observer, RunControl, TrainConfig, Trainer, CONFIG_KEY};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the waiting caller looks for Ctrl-C (Python runs signal
/// handlers only on its main thread, which waits while a pool trains).
const SIGNAL_POLL: Duration = Duration::from_millis(10);

fn value_error(e: anyhow::Error) -> PyErr {
    PyValueError::new_err(format!("{e:#}"))
}

/// The worker threads: `threads`, or every core.
fn thread_count(threads: Option<usize>) -> PyResult<usize> {
    match threads {
        Some(0) => Err(PyValueError::new_err("threads: must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// A pool of `threads` computing threads, as the command line makes.
fn pool(threads: usize) -> PyResult<rayon::ThreadPool> {
    scratchnet::tensor::pool(threads)
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start {threads} threads: {e}")))
}

/// JSON text as the Python object `json.loads` makes of it.
fn from_json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// An evaluation as a dict, with the numbers the command line's metrics
/// file holds (f32 fields written as f32, not widened).
fn record<'py>(py: Python<'py>, r: &EvalRecord) -> PyResult<Bound<'py, PyAny>> {
    from_json(py, &serde_json::to_string(r).expect("a record serialises"))
}

/// A Python keyword value as JSON, for the configuration.
fn to_json(name: &str, v: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    if v.is_none() {
        return Ok(Value::Null);
    }
    if v.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(v.extract()?));
    }
    if let Ok(i) = v.extract::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(Value::from(f));
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(Value::String(s));
    }
    if let Ok(items) = v.try_iter() {
        return items
            .map(|item| to_json(name, &item?))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    Err(PyTypeError::new_err(format!(
        "{name}: expected a number, string, bool or list, got {}",
        v.get_type().name()?
    )))
}

/// Prints a first-use download on stderr.
struct Note;
impl Progress for Note {
    fn start(&mut self, name: &str, url: &str, _len: Option<u64>) {
        eprintln!("scratchnet: fetching {name} from {url}");
    }
    fn failed(&mut self, url: &str, why: &str) {
        eprintln!("scratchnet: {url}: {why}; trying the next mirror");
    }
}

/// load_mnist(path=None, val_size=10000)
/// --
///
/// MNIST as numpy arrays: ((X_train, y_train), (X_val, y_val), (X_test, y_test)),
/// images float32 of shape (N, 784) with values byte / 256, labels uint8. The
/// validation split is the last `val_size` training images. Without `path`,
/// the data is found as the command line finds it ($SCRATCHNET_DATA,
/// ./data/mnist, the user cache, downloaded there on first use).
#[pyfunction]
#[pyo3(signature = (path=None, val_size=10_000))]
#[allow(clippy::type_complexity)]
fn load_mnist<'py>(
    py: Python<'py>,
    path: Option<PathBuf>,
    val_size: usize,
) -> PyResult<Vec<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<u8>>)>> {
    let data = py
        .detach(|| -> anyhow::Result<Dataset> {
            let found = locate_or_fetch(path.as_deref(), &mut Note)?;
            let val = (!found.path.is_file()).then_some(val_size);
            Dataset::load(&found.path, val)
        })
        .map_err(value_error)?;
    [&data.train, &data.val, &data.test]
        .into_iter()
        .map(|s| {
            let x = PyArray1::from_slice(py, &s.images).reshape([s.len(), s.features])?;
            Ok((x, PyArray1::from_slice(py, &s.labels)))
        })
        .collect()
}

/// Hands each evaluation to the Python callback; stops the run when the
/// callback returns False or raises.
struct Callback<'a> {
    callback: Option<&'a Py<PyAny>>,
    stop: &'a AtomicBool,
    error: Option<PyErr>,
    records: Vec<EvalRecord>,
}

impl Observer for Callback<'_> {
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
            Err(e) => {
                self.error = Some(e);
                self.stop.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

/// Every configuration key the trainer takes (the TOML names).
fn option_names() -> Vec<String> {
    let cfg = serde_json::to_value(TrainConfig::preset("fast").expect("the default preset"))
        .expect("a configuration serialises");
    cfg.as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
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
            images: Vec::new(),
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
                images: im.pixels,
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

/// train(X, y, X_val=None, y_val=None, *, X_test=None, y_test=None, preset="fast",
///       threads=None, callback=None, **options)
/// --
///
/// Trains a network and returns the Model. `options` are the command line's
/// training options by their configuration names (lr, epochs, iters, batch_size,
/// optimizer, l2, keep, dropout, shift, rotate, arch, seed, keep_best, patience,
/// ...). `callback(metrics)` receives each evaluation as a dict and stops the run
/// by returning False. Ctrl-C stops within a step and raises KeyboardInterrupt,
/// whose `model` attribute holds the model as of the last finished step.
#[pyfunction]
#[pyo3(signature = (X, y, X_val=None, y_val=None, *, X_test=None, y_test=None, preset=None, threads=None, callback=None, **options))]
#[allow(non_snake_case, clippy::too_many_arguments)]
fn train(
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
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<PyModel> {
    let threads = thread_count(threads)?;
    let mut overrides = serde_json::Map::new();
    if let Some(p) = preset {
        overrides.insert("preset".into(), p.into());
    }
    let known = option_names();
    for (k, v) in options.into_iter().flatten() {
        let k: String = k.extract()?;
        if !known.contains(&k) {
            return Err(PyTypeError::new_err(format!(
                "train() got an unexpected keyword argument '{k}' (options: {})",
                known.join(", ")
            )));
        }
        overrides.insert(k.clone(), to_json(&k, &v)?);
    }
    let cfg = TrainConfig::resolve(None, overrides.into()).map_err(value_error)?;

    let data = dataset([X, y], [X_val, y_val], [X_test, y_test])?;
    run(py, cfg, &data, threads, callback)
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
            images: train.pixels,
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
    callback: Option<Py<PyAny>>,
) -> PyResult<PyModel> {
    let stop = AtomicBool::new(false);
    let pool = pool(threads)?;
    let (result, signal) = py.detach(|| {
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                pool.install(|| -> anyhow::Result<_> {
                    let mut t = Trainer::new(cfg, data, Target::cpu(threads), None)?;
                    let mut obs = Callback {
                        callback: callback.as_ref(),
                        stop: &stop,
                        error: None,
                        records: Vec::new(),
                    };
                    let ctl = RunControl {
                        checkpoint_every: None,
                        checkpoint_path: None,
                        interrupt: Some(&stop),
                    };
                    let outcome = t.run(&mut obs, &ctl);
                    let model = match &outcome {
                        Ok(_) => Some(t.model(metadata(obs.records.last())?)?),
                        Err(_) => None,
                    };
                    Ok((outcome, model, obs))
                })
            });
            let mut signal = None;
            while !worker.is_finished() {
                std::thread::park_timeout(SIGNAL_POLL);
                if signal.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        signal = Some(e);
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            (worker.join(), signal)
        })
    });
    let (outcome, model, obs) = match result {
        Ok(r) => r.map_err(value_error)?,
        Err(_) => return Err(PyRuntimeError::new_err("training panicked")),
    };
    if let Some(e) = obs.error {
        return Err(e);
    }
    if let Err(e) = outcome {
        return Err(match e.downcast_ref::<scratchnet::train::Diverged>() {
            Some(_) => PyRuntimeError::new_err(format!("{e:#}")),
            None => value_error(e),
        });
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

/// The metadata a saved model carries: the last evaluation, as the command
/// line saves it.
fn metadata(last: Option<&EvalRecord>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut meta = BTreeMap::new();
    if let Some(r) = last {
        meta.insert("scratchnet.metrics".into(), serde_json::to_string(r)?);
    }
    Ok(meta)
}

/// A trained network.
#[pyclass(name = "Model", module = "scratchnet", frozen)]
struct PyModel {
    model: Model,
    records: Vec<EvalRecord>,
}

impl PyModel {
    /// Logits of `x`'s images, one row of `CLASSES` per image.
    fn logits(
        &self,
        py: Python<'_>,
        name: &str,
        x: &Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<(Vec<f32>, usize)> {
        let im = images(name, x)?;
        let inputs = self.model.layout.arch.inputs;
        if im.features != inputs {
            return Err(PyValueError::new_err(format!(
                "{name}: images of {} pixels, but the model takes {inputs}",
                im.features
            )));
        }
        let threads = thread_count(threads)?;
        let (layout, params) = (&self.model.layout, &self.model.params);
        let pool = pool(threads)?;
        let z = py
            .detach(|| pool.install(|| logits(Target::cpu(threads), layout, params, &im.pixels)))
            .map_err(value_error)?;
        Ok((z, im.count))
    }
}

#[pymethods]
impl PyModel {
    /// predict_proba(X, threads=None)
    /// --
    ///
    /// Class probabilities, float32 of shape (N, 10).
    #[pyo3(signature = (X, threads=None))]
    #[allow(non_snake_case)]
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        X: &Bound<'py, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (mut z, n) = self.logits(py, "X", X, threads)?;
        z.chunks_exact_mut(CLASSES).for_each(softmax_row);
        PyArray1::from_vec(py, z).reshape([n, CLASSES])
    }

    /// predict(X, threads=None)
    /// --
    ///
    /// The predicted digit of each image, int64 of shape (N,).
    #[pyo3(signature = (X, threads=None))]
    #[allow(non_snake_case)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        X: &Bound<'py, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (z, _) = self.logits(py, "X", X, threads)?;
        let digits: Vec<i64> = z.chunks_exact(CLASSES).map(|r| argmax(r) as i64).collect();
        Ok(PyArray1::from_vec(py, digits))
    }

    /// evaluate(X, y, threads=None)
    /// --
    ///
    /// Accuracy on (X, y): the share of images whose digit is predicted right.
    #[pyo3(signature = (X, y, threads=None))]
    #[allow(non_snake_case)]
    fn evaluate(
        &self,
        py: Python<'_>,
        X: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<f64> {
        let (z, n) = self.logits(py, "X", X, threads)?;
        let y = labels("y", y, n)?;
        let right = z
            .chunks_exact(CLASSES)
            .zip(&y)
            .filter(|(r, &l)| argmax(r) == l)
            .count();
        Ok(right as f64 / n as f64)
    }

    /// save(path)
    /// --
    ///
    /// Writes the model as safetensors (the command line's format), atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.model.save(&path))
            .map_err(|e| PyOSError::new_err(format!("{e:#}")))
    }

    /// The weights and biases by the notebook's names (W11, b11, ...), in its
    /// shapes: [out, in] and [out, 1].
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for t in self.model.layout.tensors() {
            let a =
                PyArray1::from_slice(py, &self.model.params[t.range.clone()]).reshape(t.shape)?;
            d.set_item(&t.name, a)?;
        }
        Ok(d)
    }

    /// The training configuration, as a dict of option names.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.model.metadata.get(CONFIG_KEY) {
            Some(c) => from_json(py, c),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// Every evaluation of the run that trained this model, as dicts (empty
    /// for a loaded model: the file keeps only the last, in `config`'s
    /// company under `metadata`).
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .records
            .iter()
            .map(|r| record(py, r))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// The file's metadata (configuration, last metrics, version), as strings.
    #[getter]
    fn metadata(&self) -> BTreeMap<String, String> {
        self.model.metadata.clone()
    }

    /// The architecture, e.g. `784 -> [relu 128 | tanh 64] -> relu 48 -> softmax 10`.
    #[getter]
    fn arch(&self) -> String {
        self.model.layout.arch.to_string()
    }

    fn __repr__(&self) -> String {
        format!("<scratchnet.Model {}>", self.model.layout.arch)
    }
}

/// load(path)
/// --
///
/// Reads a model saved by `save` or by `scratchnet train --save`.
#[pyfunction]
fn load(py: Python<'_>, path: PathBuf) -> PyResult<PyModel> {
    let model = py.detach(|| Model::load(&path)).map_err(value_error)?;
    Ok(PyModel {
        model,
        records: Vec::new(),
    })
}

#[pymodule]
fn _scratchnet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load_mnist, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_class::<PyModel>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
