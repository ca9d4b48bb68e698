//! scratchnet for Python: load MNIST as numpy arrays, train the notebook's
//! network from arrays, predict, evaluate, save and load models. A thin
//! layer over the library: the same trainer, backend and file format as the
//! command line, computing in the same kind of thread pool, so the same seed
//! and thread count give the same weights.

mod arrays;
mod model;
mod training;

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError, PyOSError, PyPermissionError,
    PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyBool;
use scratchnet::data::download::Progress;
use scratchnet::data::image_prep::{load_digit, SIDE};
use scratchnet::data::locate::locate_or_fetch;
use scratchnet::data::Dataset;
use scratchnet::train::{EvalRecord, SettingError, Spelling};
use std::path::PathBuf;

/// As in the command line (src/main.rs): the matrix-product crate's packing
/// buffers, allocated on every call, stay with the process.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A library error as Python's exception: a file that is missing or may
/// not be read or written as the matching `OSError` (`FileNotFoundError`,
/// `PermissionError`, ...), anything else (a corrupt file, a bad value) as
/// `ValueError`.
fn py_error(e: anyhow::Error) -> PyErr {
    use std::io::ErrorKind;
    if let Some(s) = e.downcast_ref::<SettingError>() {
        return PyValueError::new_err(s.render(Spelling::Keyword));
    }
    let message = format!("{e:#}");
    let io = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>());
    match io.map(std::io::Error::kind) {
        Some(ErrorKind::NotFound) => PyFileNotFoundError::new_err(message),
        Some(ErrorKind::PermissionDenied) => PyPermissionError::new_err(message),
        Some(ErrorKind::IsADirectory) => PyIsADirectoryError::new_err(message),
        Some(ErrorKind::NotADirectory) => PyNotADirectoryError::new_err(message),
        Some(ErrorKind::ReadOnlyFilesystem | ErrorKind::StorageFull | ErrorKind::Other) => {
            PyOSError::new_err(message)
        }
        _ => PyValueError::new_err(message),
    }
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
        if !f.is_finite() {
            return Err(PyValueError::new_err(format!(
                "{name}: {f} is not a finite number"
            )));
        }
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
        .map_err(py_error)?;
    [&data.train, &data.val, &data.test]
        .into_iter()
        .map(|s| {
            let x = PyArray1::from_slice(py, &s.images.floats()).reshape([s.len(), s.features])?;
            Ok((x, PyArray1::from_slice(py, &s.labels)))
        })
        .collect()
}

/// An image file of a handwritten digit (PNG, JPEG, PGM/PPM, BMP; any size,
/// dark on light or light on dark) prepared as MNIST's digits are, as
/// `scratchnet predict` prepares it: float32 of shape (28, 28), values in
/// [0, 1].
#[pyfunction]
fn read_digit<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let pixels = py.detach(|| load_digit(&path)).map_err(py_error)?;
    PyArray1::from_vec(py, pixels).reshape([SIDE, SIDE])
}

#[pymodule]
fn _scratchnet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load_mnist, m)?)?;
    m.add_function(wrap_pyfunction!(training::train, m)?)?;
    m.add_function(wrap_pyfunction!(training::factor_counts, m)?)?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(read_digit, m)?)?;
    m.add_class::<model::PyModel>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
