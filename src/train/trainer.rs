//! The training loop: the schedules, a step on the backend, evaluation at
//! the notebook's moments, metrics and checkpoints.

use super::checkpoint::{self, Checkpoint, CONFIG_KEY};
use super::config::{setting, SettingError, TrainConfig};
use super::metrics::EvalRecord;
use super::replay::Replay;
use super::selection::{self, Best};
use crate::backend::{self, Backend, Setup, SplitName, Step, Target};
use crate::data::batch::Batcher;
use crate::data::{Dataset, Split, CLASSES};
use crate::model_io::Model;
use crate::nn::dropout::{stream_key, Draws, GivenMasks};
use crate::nn::{l2, Layout, ParamTensor};
use crate::optim::Optimizer;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Stream id of dropout masks (see [`stream_key`]).
const DROPOUT: u64 = 3;

/// Metadata keys of a trained model: the record of the evaluation its
/// weights had, and the model selection.
pub const METRICS_KEY: &str = "scratchnet.metrics";
pub const SELECTION_KEY: &str = "scratchnet.selection";

/// Hooks for progress display; each defaults to doing nothing.
pub trait Observer {
    fn step(&mut self, _done: usize, _total: usize, _loss: f64) {}
    fn eval(&mut self, _record: &EvalRecord) -> Result<()> {
        Ok(())
    }
    /// Whether [`Observer::look`] is wanted: it costs a copy of the
    /// parameters at each evaluation.
    fn looks(&self) -> bool {
        false
    }
    /// The network itself at each evaluation, after [`Observer::eval`].
    fn look(&mut self, _look: &Look<'_>) -> Result<()> {
        Ok(())
    }
}

/// What an observer that draws the network sees at an evaluation.
pub struct Look<'a> {
    pub record: &'a EvalRecord,
    pub layout: &'a Layout,
    /// The parameters, every weight in rows.
    pub params: &'a [f32],
    /// The digits shown: the validation split, or the test split where
    /// there is none; its name; the network's answer for each image.
    pub split: &'a Split,
    pub split_name: &'static str,
    pub predicted: &'a [u8],
}

/// Several observers as one, each told in turn.
pub struct Observers<'a>(pub Vec<&'a mut dyn Observer>);

impl Observer for Observers<'_> {
    fn step(&mut self, done: usize, total: usize, loss: f64) {
        self.0.iter_mut().for_each(|o| o.step(done, total, loss));
    }
    fn eval(&mut self, record: &EvalRecord) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.eval(record))
    }
    fn looks(&self) -> bool {
        self.0.iter().any(|o| o.looks())
    }
    fn look(&mut self, look: &Look<'_>) -> Result<()> {
        self.0
            .iter_mut()
            .filter(|o| o.looks())
            .try_for_each(|o| o.look(look))
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct Summary {
    pub last: EvalRecord,
    /// With model selection on: the evaluation of the best validation
    /// accuracy (whose weights `keep_best` keeps).
    pub best: Option<EvalRecord>,
    /// Where `patience` ran out: the steps done when the run stopped.
    pub stopped_early: Option<usize>,
    /// Time spent in training steps (evaluations excluded).
    pub train_s: f64,
    pub total_s: f64,
    /// Training samples processed per second of training time.
    pub samples_per_s: f64,
}

/// A training run in progress.
pub struct Trainer<'d> {
    pub cfg: TrainConfig,
    pub layout: Layout,
    backend: Box<dyn Backend + 'd>,
    data: &'d Dataset,
    /// Current L2 factors (the schedule changes them).
    factors: Vec<f32>,
    /// Steps done.
    pub step: usize,
    pub total_steps: usize,
    steps_per_epoch: usize,
    eval_every: usize,
    /// J as the evaluation reports it (see [`EvalRecord::j`]), and the
    /// cross-entropy and L2 term it is made of.
    last_j: f64,
    last_ce: f64,
    last_l2: f64,
    /// The last loss the backend reported.
    last_loss: f64,
    /// Minibatches since the last evaluation: their summed loss (each
    /// weighted by its samples) and samples.
    since_eval: (f64, usize),
    samples: usize,
    train_time: Duration,
    /// Model selection: the best evaluation so far, its weights (with
    /// `keep_best`), and the evaluations since.
    best: Option<Best>,
    /// Each step's dropout masks, where a replay gives them.
    given_masks: Option<Vec<GivenMasks>>,
    /// The last evaluation, its answers on the validation split, and where
    /// patience stopped the run.
    last_eval: Option<EvalRecord>,
    val_predicted: Vec<u8>,
    stopped_early: Option<usize>,
}

impl<'d> Trainer<'d> {
    /// Sets up a run on `target`; `init` replaces the seeded
    /// initialisation (`--init`), every weight in rows.
    pub fn new(
        cfg: TrainConfig,
        data: &'d Dataset,
        target: Target,
        init: Option<Vec<f32>>,
    ) -> Result<Trainer<'d>> {
        Trainer::start(cfg, data, target, init, None, Replay::default())
    }

    /// Sets up a run whose samples, shifts and (optionally) dropout masks
    /// are `replay`'s, not drawn from the seed (see [`Replay`]).
    pub fn replay(
        cfg: TrainConfig,
        data: &'d Dataset,
        target: Target,
        init: Option<Vec<f32>>,
        replay: Replay,
    ) -> Result<Trainer<'d>> {
        Trainer::start(cfg, data, target, init, None, replay)
    }

    /// Continues a run from a [`Checkpoint`], on `target`.
    pub fn resume(ckpt: &Checkpoint, data: &'d Dataset, target: Target) -> Result<Trainer<'d>> {
        if ckpt.cfg.arch(data.features(), CLASSES)? != ckpt.model.layout.arch {
            bail!(
                "the checkpoint's network does not fit this data ({} inputs)",
                data.features()
            );
        }
        Trainer::start(
            ckpt.cfg.clone(),
            data,
            target,
            Some(ckpt.model.params.clone()),
            Some(ckpt),
            Replay::default(),
        )
    }

    fn start(
        cfg: TrainConfig,
        data: &'d Dataset,
        target: Target,
        init: Option<Vec<f32>>,
        resumed: Option<&Checkpoint>,
        replay: Replay,
    ) -> Result<Trainer<'d>> {
        let arch = cfg.arch(data.features(), CLASSES)?;
        cfg.check_against(&arch)?;
        if data.train.is_empty() {
            bail!("the training split is empty");
        }
        if (cfg.keep_best || cfg.patience.is_some()) && data.val.is_empty() {
            let named = match cfg.keep_best {
                true => setting!(cfg.keep_best),
                false => setting!(cfg.patience),
            };
            return Err(SettingError::new(
                named,
                "{keep_best} and {patience} choose by validation accuracy, but there is no validation split",
            )
            .into());
        }
        let layout = Layout::new(&arch);
        let params = match init {
            Some(rows) => {
                assert_eq!(
                    rows.len(),
                    layout.len,
                    "starting weights of another network"
                );
                rows
            }
            None => layout.init(cfg.init_scheme, cfg.seed),
        };
        let total_steps = cfg.total_steps(data.train.len());
        let (batcher, given_masks) = batches(&cfg, data, &layout, total_steps, replay)?;
        let spe = batcher.steps_per_epoch();
        let eval_every = cfg
            .eval_every
            .unwrap_or(if cfg.minibatch().is_some() { spe } else { 50 });
        let mut optimizer = Optimizer::new(
            cfg.optimizer,
            layout.len,
            cfg.beta1,
            cfg.beta2,
            cfg.eps,
            cfg.momentum,
        );
        let mut factors = cfg.l2_factors(&arch);
        let (mut step, mut best) = (0, None);
        if let Some(ckpt) = resumed {
            ckpt.restore(&mut optimizer)?;
            if ckpt.factors.len() != factors.len() || ckpt.step > total_steps {
                bail!("checkpoint state does not match its configuration");
            }
            (step, factors, best) = (ckpt.step, ckpt.factors.clone(), ckpt.best()?);
        }
        let setup = Setup {
            layout: layout.clone(),
            data,
            params,
            optimizer,
            batcher,
            keeps: cfg.keeps(&arch),
            dropout: cfg.dropout,
            precision: cfg.precision,
        };
        Ok(Trainer {
            backend: backend::open(target, setup)?,
            layout,
            data,
            factors,
            step,
            total_steps,
            steps_per_epoch: spe,
            eval_every,
            last_j: f64::NAN,
            last_ce: f64::NAN,
            last_l2: f64::NAN,
            last_loss: f64::NAN,
            since_eval: (0.0, 0),
            samples: 0,
            train_time: Duration::ZERO,
            best,
            given_masks,
            last_eval: None,
            val_predicted: Vec::new(),
            stopped_early: None,
            cfg,
        })
    }

    /// Steps per pass over the training split.
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// The parameters, every weight in rows: with `keep_best`, those of the
    /// best validation accuracy seen.
    pub fn params(&self) -> Result<Vec<f32>> {
        match &self.best {
            Some(Best {
                params: Some(p), ..
            }) => Ok(p.clone()),
            _ => self.backend.params(),
        }
    }

    /// The evaluation of the best validation accuracy so far (with
    /// `keep_best` or `patience`).
    pub fn best(&self) -> Option<&Best> {
        self.best.as_ref()
    }

    /// One training step; returns its cross-entropy (in a full-batch run on
    /// a device that reads it back only when J is reported, the last one
    /// read). J is kept for the evaluation that follows, the only place it
    /// is read: in a full-batch run, the notebook's (this step's
    /// cross-entropy plus the L2 term); with minibatches, the mean
    /// cross-entropy of the steps since the last evaluation.
    pub fn train_step(&mut self) -> Result<f64> {
        let t0 = Instant::now();
        let i = self.step;
        let lr = self.cfg.lr_schedule().lr(self.cfg.lr, i, self.total_steps);
        let reports_j = self.evaluates_after(i);
        let minibatch = self.cfg.minibatch().is_some();
        // J's L2 term is of the weights before the update.
        let penalty = match reports_j {
            true => l2::penalty(&self.backend.params()?, &self.layout, &self.factors),
            false => f64::NAN,
        };
        let report = self.backend.step(&Step {
            index: i,
            lr,
            l2: &self.factors,
            dropout: match &self.given_masks {
                Some(masks) => Draws::Given(&masks[i]),
                None => Draws::Key(stream_key(self.cfg.seed, i as u64, DROPOUT)),
            },
            wants_loss: reports_j || minibatch,
            more: i + 1 < self.total_steps,
        })?;
        if let Some(loss) = report.loss {
            if !loss.is_finite() {
                let params = self.backend.params()?;
                let (name, largest) = self.largest_weight(&params);
                let mut what = format!("the loss is {loss}");
                if let Some(at) = &report.non_finite_at {
                    what += &format!(": {at} holds a non-finite value");
                }
                what += &format!("; the largest weight is {largest:.1e}, in {name}");
                return Err(Diverged { step: i, what }.into());
            }
            self.last_loss = loss;
            if minibatch {
                self.since_eval.0 += loss * report.rows as f64;
                self.since_eval.1 += report.rows;
            }
        }
        if report.finite == Some(false) {
            let params = self.backend.params()?;
            let bad = self
                .layout
                .tensors()
                .find(|t| params[t.range.clone()].iter().any(|v| !v.is_finite()));
            let name = bad.map_or("?", |t| t.name.as_str());
            let what = format!(
                "tensor {name} holds a non-finite value after the update (learning rate {lr:e})"
            );
            return Err(Diverged { step: i, what }.into());
        }
        if reports_j {
            let (sum, rows) = std::mem::take(&mut self.since_eval);
            (self.last_ce, self.last_l2) = match minibatch {
                true => (sum / rows as f64, penalty),
                false => (self.last_loss, penalty),
            };
            self.last_j = match minibatch {
                true => self.last_ce,
                false => self.last_ce + penalty,
            };
        }
        self.samples += report.rows;
        self.cfg.reg_schedule().after_step(i, &mut self.factors);
        self.step += 1;
        self.train_time += t0.elapsed();
        Ok(self.last_loss)
    }

    /// The weight tensor holding the largest magnitude, and that magnitude.
    fn largest_weight(&self, params: &[f32]) -> (&str, f32) {
        let largest = |t: &ParamTensor| {
            params[t.range.clone()]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
        };
        self.layout
            .weights
            .iter()
            .map(|t| (t.name.as_str(), largest(t)))
            .fold(("?", -1.0), |a, b| if b.1 > a.1 { b } else { a })
    }

    /// Waits until the device has finished the steps queued so far (a no-op
    /// on the CPU); for timing.
    pub fn wait(&self) -> Result<()> {
        self.backend.wait()
    }

    /// Accuracy on the test split (what `bench` times as inference).
    pub fn test_accuracy(&mut self) -> Result<f64> {
        self.backend.accuracy(SplitName::Test)
    }

    /// Accuracy on the three splits and the validation loss, without
    /// dropout, and the training loss reported since the last evaluation.
    pub fn evaluate(&mut self, elapsed_s: f64) -> Result<EvalRecord> {
        let train_acc = self.backend.accuracy(SplitName::Train)?;
        let val = self.backend.score(SplitName::Val)?;
        let test_acc = self.backend.accuracy(SplitName::Test)?;
        let has_val = !self.data.val.is_empty();
        self.val_predicted = val.predicted;
        Ok(EvalRecord {
            iter: self.step,
            epoch: self.step as f64 / self.steps_per_epoch as f64,
            j: self.last_j,
            l2: Some(self.last_l2),
            train_loss: Some(self.last_ce),
            val_loss: has_val.then_some(val.loss),
            train_acc,
            val_acc: has_val.then_some(val.accuracy),
            test_acc,
            lr: self.cfg.lr_schedule().lr(
                self.cfg.lr,
                self.step.saturating_sub(1),
                self.total_steps,
            ),
            elapsed_s,
            best_iter: None,
        })
    }

    /// Notes evaluation `r` for model selection (`keep_best`, `patience`):
    /// sets its `best_iter`; returns whether patience ran out.
    fn select(&mut self, r: &mut EvalRecord) -> Result<bool> {
        if !self.cfg.keep_best && self.cfg.patience.is_none() {
            return Ok(false);
        }
        let backend = &self.backend;
        let since = selection::note(&mut self.best, r, self.cfg.keep_best, || backend.params())?;
        Ok(self.cfg.patience.is_some_and(|p| since >= p))
    }

    /// Whether the notebook's loop would evaluate after step `i` (0-based):
    /// full batch at i % every == 0 (iteration 0, 50, ...); minibatch at the
    /// end of every `every` steps; and always after the last step.
    fn evaluates_after(&self, i: usize) -> bool {
        let every = self.eval_every;
        let periodic = if self.cfg.minibatch().is_some() {
            (i + 1).is_multiple_of(every)
        } else {
            i.is_multiple_of(every)
        };
        periodic || i + 1 == self.total_steps
    }

    /// Runs the remaining steps: until the last, or until `ctl.interrupt` is
    /// raised (the step under way finishes, a checkpoint is written if
    /// `ctl` names a path).
    pub fn run(&mut self, obs: &mut dyn Observer, ctl: &RunControl<'_>) -> Result<Outcome> {
        let start = Instant::now();
        let (mut last, mut stopped_early) = (None, None);
        while self.step < self.total_steps {
            let loss = self.train_step()?;
            obs.step(self.step, self.total_steps, loss);
            if self.evaluates_after(self.step - 1) {
                let mut r = self.evaluate(start.elapsed().as_secs_f64())?;
                let patience_out = self.select(&mut r)?;
                obs.eval(&r)?;
                if obs.looks() {
                    self.look(&r, obs)?;
                }
                self.last_eval = Some(r.clone());
                last = Some(r);
                if patience_out {
                    stopped_early = Some(self.step);
                    self.stopped_early = stopped_early;
                    break;
                }
            }
            let due = ctl
                .checkpoint_every
                .is_some_and(|n| self.step.is_multiple_of(n));
            let stop = ctl.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
                && self.step < self.total_steps;
            if let Some(path) = ctl.checkpoint_path.as_ref().filter(|_| due || stop) {
                self.checkpoint()?.save(path)?;
            }
            if stop {
                return Ok(Outcome::Interrupted { step: self.step });
            }
        }
        let last = match last {
            Some(r) => r,
            None => {
                let mut r = self.evaluate(start.elapsed().as_secs_f64())?;
                self.select(&mut r)?;
                self.last_eval = Some(r.clone());
                r
            }
        };
        let train_s = self.train_time.as_secs_f64();
        Ok(Outcome::Finished(Box::new(Summary {
            last,
            best: self.best.as_ref().map(|b| b.record.clone()),
            stopped_early,
            train_s,
            total_s: start.elapsed().as_secs_f64(),
            samples_per_s: self.samples as f64 / train_s.max(1e-9),
        })))
    }

    /// Shows `obs` the network as evaluation `r` found it.
    fn look(&mut self, r: &EvalRecord, obs: &mut dyn Observer) -> Result<()> {
        let (split, split_name, predicted) = match self.data.val.is_empty() {
            false => (&self.data.val, "validation", &self.val_predicted),
            true => {
                self.val_predicted = self.backend.score(SplitName::Test)?.predicted;
                (&self.data.test, "test", &self.val_predicted)
            }
        };
        let params = self.backend.params()?;
        obs.look(&Look {
            record: r,
            layout: &self.layout,
            params: &params,
            split,
            split_name,
            predicted,
        })
    }

    /// The trained model: the weights kept (with `keep_best`, those of the
    /// best evaluation), and in its metadata the configuration, the data's
    /// checksums, the steps, the record of the evaluation those weights
    /// had, and the model selection where it was on.
    pub fn trained_model(&self) -> Result<Model> {
        let mut meta = BTreeMap::new();
        let best = self.best.as_ref().map(|b| &b.record);
        let kept = match (best, self.cfg.keep_best) {
            (Some(b), true) => Some(b),
            _ => self.last_eval.as_ref(),
        };
        if let Some(r) = kept {
            meta.insert(METRICS_KEY.to_string(), serde_json::to_string(r)?);
        }
        if self.cfg.keep_best || self.cfg.patience.is_some() {
            let selection = serde_json::json!({
                "keep_best": self.cfg.keep_best,
                "patience": self.cfg.patience,
                "best_iter": best.map(|b| b.iter),
                "best_val_acc": best.and_then(|b| b.val_acc),
                "stopped_early": self.stopped_early,
                "last": self.last_eval,
            });
            meta.insert(SELECTION_KEY.to_string(), selection.to_string());
        }
        self.model(meta)
    }

    /// The model, with the configuration and data checksums recorded.
    fn model(&self, mut metadata: BTreeMap<String, String>) -> Result<Model> {
        // Where the run reported is no part of what it trained.
        let trained = TrainConfig {
            tensorboard: None,
            ..self.cfg.clone()
        };
        metadata.insert(CONFIG_KEY.into(), serde_json::to_string(&trained)?);
        metadata.insert(
            "scratchnet.data_sha256".into(),
            serde_json::to_string(&self.data.checksums)?,
        );
        metadata.insert("scratchnet.steps".into(), self.step.to_string());
        Ok(Model {
            layout: self.layout.clone(),
            params: self.params()?,
            metadata,
            extra: BTreeMap::new(),
        })
    }

    /// Everything needed to continue exactly where this run is (see
    /// [`checkpoint`]).
    pub fn checkpoint(&self) -> Result<Model> {
        // The weights reached, whatever `keep_best` keeps: the run goes on
        // from them.
        let mut model = self.model(BTreeMap::new())?;
        model.params = self.backend.params()?;
        checkpoint::write(
            model,
            self.step,
            &self.factors,
            &self.backend.optimizer()?,
            self.best.as_ref(),
        )
    }
}

/// Which samples each step of a run takes, and how changed: drawn from the
/// seed, or given by `replay` (with its masks, returned apart).
fn batches(
    cfg: &TrainConfig,
    data: &Dataset,
    layout: &Layout,
    total_steps: usize,
    replay: Replay,
) -> Result<(Batcher, Option<Vec<GivenMasks>>)> {
    let (n, shape) = (data.train.len(), data.shape);
    let batcher =
        Batcher::new(n, cfg.minibatch(), cfg.seed, cfg.shift, shape).distorted(cfg.distortion());
    if replay == Replay::default() {
        return Ok((batcher, None));
    }
    if replay.steps() < total_steps {
        bail!(
            "a replay of {} steps for a run of {total_steps}",
            replay.steps()
        );
    }
    replay.check_masks(layout)?;
    let batcher = batcher
        .given(replay.batches)
        .map_err(|e| anyhow::anyhow!("replayed batches: {e}"))?;
    Ok((batcher, replay.masks))
}

impl Summary {
    /// A warning where the run ended at or near chance accuracy (under
    /// twice chance, on validation where there is one, else on test): it
    /// learned nothing worth keeping.
    pub fn near_chance(&self, classes: usize, lr: f32) -> Option<String> {
        let r = &self.last;
        let (acc, split) = match r.val_acc {
            Some(v) => (v, "validation"),
            None => (r.test_acc, "test"),
        };
        let chance = 1.0 / classes.max(1) as f64;
        (acc < 2.0 * chance).then(|| {
            format!(
                "the run ended near chance: {split} accuracy {acc:.4}, where guessing gets {chance:.2}; nothing worth keeping was learned (a learning rate of {lr:e} may be far too high or too low)"
            )
        })
    }
}

/// A run that stopped because a value stopped being finite: its weights are
/// not worth keeping.
#[derive(Debug, thiserror::Error)]
#[error("training diverged at iteration {step}: {what} (try a lower learning rate)")]
pub struct Diverged {
    pub step: usize,
    pub what: String,
}

/// Where and when [`Trainer::run`] writes checkpoints, and its stop flag
/// (by default: no checkpoints, no stop flag).
#[derive(Default)]
pub struct RunControl<'a> {
    pub checkpoint_every: Option<usize>,
    /// Where checkpoints go (every `checkpoint_every` steps and on an
    /// interruption); `None`: nowhere, an interruption just stops.
    pub checkpoint_path: Option<PathBuf>,
    pub interrupt: Option<&'a AtomicBool>,
}

/// How [`Trainer::run`] ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(Box<Summary>),
    /// Stopped on request after `step` steps (and a checkpoint written, if
    /// asked for).
    Interrupted {
        step: usize,
    },
}
