//! `Model`: a trained network in Python's hands, and `load`.

use crate::arrays::{images, labels};
use crate::{from_json, pool, py_error, record, thread_count};
use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use scratchnet::backend::{logits, Target};
use scratchnet::data::CLASSES;
use scratchnet::export::onnx::export;
use scratchnet::model_io::Model;
use scratchnet::nn::network::argmax;
use scratchnet::nn::softmax_ce::softmax_row;
use scratchnet::train::{EvalRecord, CONFIG_KEY, METRICS_KEY};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A trained network.
#[pyclass(name = "Model", module = "scratchnet", frozen)]
pub struct PyModel {
    pub model: Model,
    pub records: Vec<EvalRecord>,
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
            .map_err(py_error)?;
        Ok((z, im.count))
    }
}

#[pymethods]
impl PyModel {
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

    /// Writes the model as safetensors (the command line's format),
    /// atomically; `metadata` adds string entries to the file's own.
    #[pyo3(signature = (path, metadata=None))]
    fn save(
        &self,
        py: Python<'_>,
        path: PathBuf,
        metadata: Option<BTreeMap<String, String>>,
    ) -> PyResult<()> {
        let saved = |m: &Model| py.detach(|| m.save(&path)).map_err(py_error);
        match metadata {
            None => saved(&self.model),
            Some(extra) => {
                let mut m = self.model.clone();
                m.metadata.extend(extra);
                saved(&m)
            }
        }
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

    /// Writes the model as ONNX (opset and layout as `scratchnet export`),
    /// atomically.
    fn export_onnx(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| export(&self.model, &path)).map_err(py_error)
    }

    /// Loss and accuracies against the iteration, from `metrics`: a
    /// matplotlib figure (needs the `plot` extra).
    fn plot_curves<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        plots(slf.py())?.call_method1("curves", (slf,))
    }

    /// The confusion matrix of the predictions on (X, y): a matplotlib
    /// figure (needs the `plot` extra).
    #[allow(non_snake_case)]
    fn plot_confusion<'py>(
        slf: &Bound<'py, Self>,
        X: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        plots(slf.py())?.call_method1("confusion", (slf, X, y))
    }

    /// One line: the architecture, parameters and last accuracies.
    fn __repr__(&self) -> String {
        let s = self.summary();
        let accuracy: String = s
            .last
            .iter()
            .flat_map(|r| [("val", r.val_acc), ("test", Some(r.test_acc))])
            .filter_map(|(name, v)| Some(format!(", {name} {}", percent(v?)?)))
            .collect();
        format!(
            "<scratchnet.Model {} ({} parameters){accuracy}>",
            s.arch, s.parameters
        )
    }

    /// A table for notebooks: architecture, parameters, the last
    /// evaluation and the training configuration.
    fn _repr_html_(&self) -> String {
        let s = self.summary();
        let row = |k: &str, v: &str| {
            format!("<tr><th style=\"text-align:left\">{k}</th><td style=\"text-align:left\">{}</td></tr>", html(v))
        };
        let mut rows = vec![
            row("architecture", &s.arch),
            row("parameters", &s.parameters.to_string()),
        ];
        if let Some(r) = &s.last {
            let pct = |v: Option<f64>| v.and_then(percent).unwrap_or_else(|| "-".into());
            rows.push(row(
                "accuracy",
                &format!(
                    "train {}, validation {}, test {} (iteration {}, epoch {:.2})",
                    pct(Some(r.train_acc)),
                    pct(r.val_acc),
                    pct(Some(r.test_acc)),
                    r.iter,
                    r.epoch
                ),
            ));
        }
        if let Some(c) = self.model.metadata.get(CONFIG_KEY) {
            let config: BTreeMap<String, serde_json::Value> =
                serde_json::from_str(c).unwrap_or_default();
            let text: Vec<String> = config.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            rows.push(row("configuration", &text.join(", ")));
        }
        format!(
            "<table><caption style=\"text-align:left\"><b>scratchnet.Model</b></caption>{}</table>",
            rows.join("")
        )
    }
}

/// What a model's reprs show.
struct ModelSummary {
    arch: String,
    parameters: usize,
    last: Option<EvalRecord>,
}

impl PyModel {
    fn summary(&self) -> ModelSummary {
        let saved = || {
            let text = self.model.metadata.get(METRICS_KEY)?;
            serde_json::from_str::<EvalRecord>(text).ok()
        };
        ModelSummary {
            arch: self.model.layout.arch.to_string(),
            parameters: self.model.layout.len,
            last: self.records.last().cloned().or_else(saved),
        }
    }
}

/// The pictures' module, which needs matplotlib.
fn plots(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("scratchnet.plots")
}

/// An accuracy as a percentage; `None` for a split that was empty (NaN).
fn percent(v: f64) -> Option<String> {
    v.is_finite().then(|| format!("{:.2}%", 100.0 * v))
}

/// `s` with HTML's special characters escaped.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Reads a model saved by `save` or by `scratchnet train --save`.
#[pyfunction]
pub fn load(py: Python<'_>, path: PathBuf) -> PyResult<PyModel> {
    let model = py.detach(|| Model::load(&path)).map_err(py_error)?;
    Ok(PyModel {
        model,
        records: Vec::new(),
    })
}
