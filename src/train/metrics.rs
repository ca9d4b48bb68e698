//! What training reports: one record per evaluation, written as JSON lines,
//! and the accuracy breakdowns of `eval`.

use crate::data::CLASSES;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// One evaluation during training (the notebook's printed line, and more).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Steps done so far (the notebook's `i` is `iter - 1`).
    pub iter: usize,
    pub epoch: f64,
    /// The training loss, with dropout: in a full-batch run the notebook's
    /// J, that iteration's cross-entropy plus the L2 term; with minibatches,
    /// the mean cross-entropy of the steps since the last evaluation.
    #[serde(rename = "J")]
    pub j: f64,
    /// The L2 term of the last step before the evaluation (of the weights
    /// before its update): `Σ l·mean(W²) / 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f64>,
    /// The training cross-entropy, with dropout, that J stands for: that
    /// iteration's in a full-batch run (J less the L2 term), the mean since
    /// the last evaluation with minibatches (J itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// The validation split's mean cross-entropy, without dropout.
    #[serde(default)]
    pub val_loss: Option<f64>,
    pub train_acc: f64,
    pub val_acc: Option<f64>,
    /// NaN where there is no test split (null in JSON).
    #[serde(deserialize_with = "nan_if_null")]
    pub test_acc: f64,
    pub lr: f32,
    /// Seconds since training started, evaluations included.
    pub elapsed_s: f64,
    /// Where model selection is on (`keep_best`, `patience`): the
    /// iteration of the best validation accuracy so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_iter: Option<usize>,
}

/// JSON's null, which serde_json writes for NaN, read back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Appends [`EvalRecord`]s to a JSON-lines file, flushing each.
pub struct MetricsWriter {
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Creates (or, to continue a resumed run, appends to) `path`.
    pub fn open(path: &Path, append: bool) -> Result<MetricsWriter> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("--metrics {}: cannot create", path.display()))?;
        Ok(MetricsWriter {
            out: BufWriter::new(f),
        })
    }

    pub fn write(&mut self, r: &EvalRecord) -> Result<()> {
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")?;
        self.out.flush().context("cannot write metrics")
    }
}

/// `m[true][predicted]` counts.
pub fn confusion(labels: &[u8], predicted: &[u8]) -> [[usize; CLASSES]; CLASSES] {
    let mut m = [[0; CLASSES]; CLASSES];
    for (&t, &p) in labels.iter().zip(predicted) {
        m[t as usize][p as usize] += 1;
    }
    m
}

/// Accuracy of each true class (NaN where a class has no sample).
pub fn per_class_accuracy(m: &[[usize; CLASSES]; CLASSES]) -> [f64; CLASSES] {
    std::array::from_fn(|c| m[c][c] as f64 / m[c].iter().sum::<usize>() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_per_class_known_answer() {
        let m = confusion(&[0, 0, 1, 1, 1, 2], &[0, 1, 1, 1, 2, 2]);
        assert_eq!(m[0][..3], [1, 1, 0]);
        assert_eq!(m[1][..3], [0, 2, 1]);
        let acc = per_class_accuracy(&m);
        assert_eq!(acc[0], 0.5);
        assert!((acc[1] - 2.0 / 3.0).abs() < 1e-12);
        assert!(acc[5].is_nan());
    }

    /// A run without a test split records NaN, written as null: a saved
    /// model's record must read back.
    #[test]
    fn a_record_without_a_test_accuracy_reads_back() {
        let json = r#"{"iter":40,"epoch":1.0,"J":0.5,"val_loss":null,"train_acc":0.9,"val_acc":0.88,"test_acc":null,"lr":0.003,"elapsed_s":1.5}"#;
        let r: EvalRecord = serde_json::from_str(json).unwrap();
        assert!(r.test_acc.is_nan());
        assert_eq!((r.iter, r.val_acc), (40, Some(0.88)));
        let again: EvalRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(again.test_acc.is_nan() && again.train_acc == 0.9);
    }
}
