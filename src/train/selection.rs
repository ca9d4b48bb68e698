//! Model selection: the evaluation of the best validation accuracy so far
//! (its weights kept with `keep_best`), and how many evaluations since have
//! done no better (`patience` counts them).

use super::metrics::EvalRecord;
use anyhow::Result;

/// The evaluation of the best validation accuracy so far.
#[derive(Clone, Debug)]
pub struct Best {
    pub record: EvalRecord,
    /// Its weights, in rows (kept with `keep_best`).
    pub params: Option<Vec<f32>>,
    /// Evaluations since, none better.
    pub since: usize,
}

/// Notes evaluation `r` against `best`, setting `r.best_iter`; where `r`
/// is better and `keep` is set, `weights` gives the weights to keep.
/// Returns the evaluations since the best.
pub fn note(
    best: &mut Option<Best>,
    r: &mut EvalRecord,
    keep: bool,
    weights: impl FnOnce() -> Result<Vec<f32>>,
) -> Result<usize> {
    let val = r.val_acc.unwrap_or(f64::NAN);
    let better = best
        .as_ref()
        .is_none_or(|b| val > b.record.val_acc.unwrap_or(f64::NAN));
    if better {
        let params = if keep { Some(weights()?) } else { None };
        r.best_iter = Some(r.iter);
        *best = Some(Best {
            record: r.clone(),
            params,
            since: 0,
        });
    } else if let Some(b) = best {
        b.since += 1;
        r.best_iter = Some(b.record.iter);
    }
    Ok(best.as_ref().map_or(0, |b| b.since))
}
