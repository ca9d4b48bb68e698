//! The training loop: batch → forward → loss → backward → L2 → optimiser
//! step → schedules → (sometimes) evaluation.

use super::config::TrainConfig;
use super::metrics::EvalRecord;
use crate::data::batch::Batcher;
use crate::data::{Dataset, Split, CLASSES};
use crate::device::Device;
use crate::model_io::{Model, STATE_PREFIX};
use crate::nn::dropout::stream_key;
use crate::nn::network::Dropout;
use crate::nn::{l2, Input, Layout, Network, Workspace};
use crate::optim::{Decay, Optimizer};
use crate::tensor::{pair_order, Aligned, ColumnBlocks, PairRows, SparseRows};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Stream id of dropout masks (see [`stream_key`]).
const DROPOUT: u64 = 3;
/// Rows evaluated at once.
const EVAL_ROWS: usize = 2048;
/// Rows per block of the first layer's weight gradient on compressed input
/// (their `dZ1`, 384 KB, stays in L2).
const GRAD_BLOCK_ROWS: usize = 512;

/// Hooks for progress display; both default to doing nothing.
pub trait Observer {
    fn step(&mut self, _done: usize, _total: usize, _loss: f64) {}
    fn eval(&mut self, _record: &EvalRecord) -> Result<()> {
        Ok(())
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct Summary {
    pub last: EvalRecord,
    /// Time spent in training steps (evaluations excluded).
    pub train_s: f64,
    pub total_s: f64,
    /// Training samples processed per second of training time.
    pub samples_per_s: f64,
}

/// A training run in progress.
pub struct Trainer<'d> {
    pub cfg: TrainConfig,
    pub net: Network,
    /// On a cache line: the sparse kernels read the first layer's weight
    /// in place (see [`crate::nn::Layout::w0_panels`]).
    pub params: Aligned,
    grads: Vec<f32>,
    opt: Optimizer,
    /// Current L2 factors (the schedule changes them).
    factors: Vec<f32>,
    /// This step's L2 terms, for the optimiser (reused).
    decay: Vec<Decay>,
    keeps: Vec<f32>,
    batcher: Batcher,
    /// The data compressed, when it is sparse enough to gain from it.
    sparse: Option<SparseData>,
    /// Training on the GPU (`use_device`).
    #[cfg(feature = "cuda")]
    gpu: Option<GpuState>,
    ws: Workspace,
    eval_ws: Workspace,
    data: &'d Dataset,
    /// Steps done.
    pub step: usize,
    pub total_steps: usize,
    eval_every: usize,
    last_j: f64,
    samples: usize,
    train_time: Duration,
}

impl<'d> Trainer<'d> {
    /// Sets up a run; `init` replaces the seeded initialisation (`--init`),
    /// every weight in rows, as files hold them.
    pub fn new(
        cfg: TrainConfig,
        data: &'d Dataset,
        threads: usize,
        init: Option<Vec<f32>>,
    ) -> Result<Trainer<'d>> {
        let arch = cfg.arch(data.features(), CLASSES)?;
        cfg.validate(&arch)?;
        if data.train.is_empty() {
            bail!("the training split is empty");
        }
        let batcher = Batcher::new(
            data.train.len(),
            cfg.minibatch(),
            cfg.seed,
            cfg.shift,
            data.shape,
        );
        let sparse = SparseData::new(data, batcher.is_whole_split());
        // The first layer's weight in panels serves the sparse kernels; dense
        // data multiplies it in rows (unpacking it and repacking its
        // gradient every step made a 128-row step ~20% slower).
        let mut layout = Layout::new(&arch);
        layout.w0_panels &= sparse.is_some();
        let params = match init {
            Some(mut rows) => {
                assert_eq!(rows.len(), layout.len);
                layout.from_row_major(&mut rows);
                rows
            }
            None => layout.init(cfg.init, cfg.seed),
        };
        let net = Network::new(layout, threads);
        let spe = batcher.steps_per_epoch();
        let total_steps = cfg.iters.unwrap_or_else(|| cfg.epochs.unwrap_or(1) * spe);
        let eval_every = cfg
            .eval_every
            .unwrap_or(if cfg.minibatch().is_some() { spe } else { 50 });
        let opt = Optimizer::new(
            cfg.optimizer,
            net.layout.len,
            cfg.beta1,
            cfg.beta2,
            cfg.eps,
            cfg.momentum,
        );
        Ok(Trainer {
            sparse,
            #[cfg(feature = "cuda")]
            gpu: None,
            factors: cfg.l2_factors(&arch),
            decay: Vec::new(),
            keeps: cfg.keeps(&arch),
            grads: vec![0.0; net.layout.len],
            ws: net.workspace(batcher.max_rows()),
            eval_ws: net.workspace(EVAL_ROWS),
            opt,
            batcher,
            params: Aligned::from(&params[..]),
            net,
            data,
            step: 0,
            total_steps,
            eval_every,
            last_j: f64::NAN,
            samples: 0,
            train_time: Duration::ZERO,
            cfg,
        })
    }

    /// Steps per pass over the training split.
    pub fn steps_per_epoch(&self) -> usize {
        self.batcher.steps_per_epoch()
    }

    /// One training step; returns its cross-entropy. J (cross-entropy plus
    /// the L2 term, as the notebook reports it) is kept for the evaluation
    /// that follows, the only place it is read.
    pub fn train_step(&mut self) -> Result<f64> {
        let t0 = Instant::now();
        let i = self.step;
        let lr = self.cfg.lr_schedule().lr(self.cfg.lr, i, self.total_steps);
        let reports_j = self.evaluates_after(i);
        let key = stream_key(self.cfg.seed, i as u64, DROPOUT);
        #[cfg(feature = "cuda")]
        let ce = match self.gpu.is_some() {
            true => self.gpu_step(i, lr, key, reports_j)?,
            false => self.cpu_step(i, lr, key, reports_j)?,
        };
        #[cfg(not(feature = "cuda"))]
        let ce = self.cpu_step(i, lr, key, reports_j)?;
        self.cfg.reg_schedule().after_step(i, &mut self.factors);
        self.step += 1;
        self.train_time += t0.elapsed();
        Ok(ce)
    }

    /// Step `i` on the CPU; `key` keys its dropout masks.
    fn cpu_step(&mut self, i: usize, lr: f32, key: u64, reports_j: bool) -> Result<f64> {
        let dropout = self.keeps.iter().any(|&k| k < 1.0).then(|| Dropout {
            mode: self.cfg.dropout,
            keeps: &self.keeps,
            key,
        });
        let (net, params, grads, ws) = (&self.net, &self.params, &mut self.grads, &mut self.ws);
        let (batcher, split) = (&mut self.batcher, &self.data.train);
        let (ce, rows) = match &mut self.sparse {
            Some(SparseData {
                train: TrainRows::Whole { rows, by_column },
                ..
            }) => {
                let x = Input::Paired {
                    rows: rows.rows.view(),
                    by_column: Some(by_column),
                };
                let ce = net.loss_and_grads(params, grads, x, &rows.labels, ws, dropout.as_ref());
                (ce, split.len())
            }
            Some(SparseData {
                train: TrainRows::Batches(train),
                batches: [now, next],
                ..
            }) => {
                if now.step != Some(i) {
                    now.fill(batcher, split, train, i);
                }
                // Step i computes while another thread prepares step i + 1
                // (the preparation is mostly serial work).
                let more = i + 1 < self.total_steps;
                let (ce, ()) = rayon::join(
                    || {
                        net.loss_and_grads(
                            params,
                            grads,
                            now.input(),
                            &now.labels,
                            ws,
                            dropout.as_ref(),
                        )
                    },
                    || {
                        if more {
                            next.fill(batcher, split, train, i + 1)
                        }
                    },
                );
                let rows = now.labels.len();
                std::mem::swap(now, next);
                (ce, rows)
            }
            None => {
                let (x, y) = batcher.get(split, i);
                let ce =
                    net.loss_and_grads(params, grads, Input::Dense(x), y, ws, dropout.as_ref());
                (ce, y.len())
            }
        };
        if !ce.is_finite() {
            bail!("training diverged at iteration {i}: the loss is {ce} (try a lower --lr)");
        }
        if reports_j {
            self.last_j = ce + l2::penalty(&self.params, &self.net.layout, &self.factors);
        }
        self.samples += rows;
        l2::decay(
            &self.net.layout,
            &self.factors,
            self.data.train.len(),
            &mut self.decay,
        );
        if !self
            .opt
            .step(&mut self.params, &self.grads, &self.decay, lr)
        {
            let t = self
                .net
                .layout
                .tensors()
                .find(|t| self.params[t.range.clone()].iter().any(|v| !v.is_finite()));
            let name = t.map_or("?", |t| t.name.as_str());
            bail!("training diverged at iteration {i}: tensor {name} holds a non-finite value after the update (learning rate {lr:e}; try a lower --lr)");
        }
        Ok(ce)
    }

    /// Step `i` on the GPU. The loss is read back (and the divergence
    /// checks run) only at steps that report J; other steps return the last
    /// loss read.
    #[cfg(feature = "cuda")]
    fn gpu_step(&mut self, i: usize, lr: f32, key: u64, reports_j: bool) -> Result<f64> {
        use crate::data::augment::random_shift;
        use crate::gpu::GpuStep;
        let g = self.gpu.as_mut().expect("a GPU run");
        let dropout = self
            .keeps
            .iter()
            .any(|&k| k < 1.0)
            .then_some((self.cfg.dropout, key));
        // J's L2 term is of the weights before the update, as on the CPU.
        let before = if reports_j {
            Some(g.net.params()?)
        } else {
            None
        };
        let n = self.data.train.len();
        let (loss, rows) = if self.batcher.is_whole_split() {
            let step = GpuStep::Whole(&g.train);
            (
                g.net.step(step, lr, &self.factors, n, dropout, reports_j)?,
                n,
            )
        } else {
            let (ids, shift_key) = self.batcher.plan(i);
            let shift = self.cfg.shift;
            g.shifts.clear();
            g.shifts.extend((0..ids.len()).map(|j| match shift {
                0 => (0, 0),
                s => random_shift(shift_key, j as u64, s),
            }));
            let step = GpuStep::Rows {
                split: &g.train,
                ids,
                shifts: &g.shifts,
                shape: self.data.shape,
                into: &mut g.batch,
            };
            let rows = ids.len();
            (
                g.net.step(step, lr, &self.factors, n, dropout, reports_j)?,
                rows,
            )
        };
        self.samples += rows;
        if let (Some(ce), Some(before)) = (loss, before) {
            if !ce.is_finite() {
                bail!("training diverged at iteration {i}: the loss is {ce} (try a lower --lr)");
            }
            let bad = g.net.non_finite()?;
            if bad > 0 {
                bail!("training diverged by iteration {i}: {bad} parameters are non-finite (learning rate {lr:e}; try a lower --lr)");
            }
            self.last_j = ce + l2::penalty(&before, &self.net.layout, &self.factors);
            g.last_loss = ce;
        }
        Ok(g.last_loss)
    }

    /// Moves training to `device`: for CUDA, uploads the parameters, the
    /// optimiser's state and the data (fails clearly without a GPU).
    pub fn use_device(&mut self, device: Device) -> Result<()> {
        device.check()?;
        #[cfg(feature = "cuda")]
        if device == Device::Cuda {
            use crate::gpu::{open, GpuNet};
            let ctx = open()?;
            let rows = self.batcher.max_rows();
            let net = GpuNet::new(
                &ctx,
                &self.net.layout,
                &self.params,
                &self.opt,
                &self.keeps,
                rows,
            )?;
            let d = self.data;
            self.gpu = Some(GpuState {
                train: net.upload(&d.train)?,
                val: net.upload(&d.val)?,
                test: net.upload(&d.test)?,
                batch: net.batch_buffer(rows)?,
                shifts: Vec::new(),
                last_loss: f64::NAN,
                net,
            });
            // The CPU's compressed copies are not needed any more.
            self.sparse = None;
        }
        Ok(())
    }

    /// Brings the parameters and optimiser state back from the GPU, if
    /// training runs there (before checkpoints and at the end).
    fn sync_host(&mut self) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu {
            self.params.copy_from_slice(&g.net.params()?);
            g.net.sync_optimizer(&mut self.opt)?;
        }
        Ok(())
    }

    /// Waits until the device has finished the steps queued so far (a no-op
    /// on the CPU); for timing.
    pub fn wait(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu {
            g.net.synchronize()?;
        }
        Ok(())
    }

    /// Accuracy on the test split (what `bench` times as inference).
    pub fn test_accuracy(&mut self) -> Result<f64> {
        self.accuracy_on(2)
    }

    /// Accuracy on split `which` (0 train, 1 val, 2 test), without dropout,
    /// where training runs: the GPU's copy, or the compressed or dense split.
    fn accuracy_on(&mut self, which: usize) -> Result<f64> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &mut self.gpu {
            return g.net.accuracy([&g.train, &g.val, &g.test][which]);
        }
        let d = self.data;
        let split = [&d.train, &d.val, &d.test][which];
        fn paired(p: &PairedSplit) -> (Input<'_>, &[u8]) {
            let rows = p.rows.view();
            (
                Input::Paired {
                    rows,
                    by_column: None,
                },
                &p.labels[..],
            )
        }
        let (x, labels) = match (&self.sparse, which) {
            (None, _) => (Input::Dense(&split.images), &split.labels[..]),
            (Some(s), 0) => match &s.train {
                TrainRows::Batches(rows) => {
                    (Input::new(&split.images, Some(rows)), &split.labels[..])
                }
                TrainRows::Whole { rows, .. } => paired(rows),
            },
            (Some(s), 1) => paired(&s.val),
            (Some(s), _) => paired(&s.test),
        };
        Ok(self
            .net
            .accuracy(&self.params, x, labels, &mut self.eval_ws))
    }

    /// Accuracy on the three splits, without dropout.
    pub fn evaluate(&mut self, elapsed_s: f64) -> Result<EvalRecord> {
        let (train_acc, val, test_acc) = (
            self.accuracy_on(0)?,
            self.accuracy_on(1)?,
            self.accuracy_on(2)?,
        );
        let d = self.data;
        Ok(EvalRecord {
            iter: self.step,
            epoch: self.step as f64 / self.steps_per_epoch() as f64,
            j: self.last_j,
            train_acc,
            val_acc: (!d.val.is_empty()).then_some(val),
            test_acc,
            lr: self.cfg.lr_schedule().lr(
                self.cfg.lr,
                self.step.saturating_sub(1),
                self.total_steps,
            ),
            elapsed_s,
        })
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
    /// raised (the step under way finishes, a checkpoint is written).
    pub fn run(&mut self, obs: &mut dyn Observer, ctl: &RunControl<'_>) -> Result<Outcome> {
        let start = Instant::now();
        let mut last = None;
        while self.step < self.total_steps {
            let loss = self.train_step()?;
            obs.step(self.step, self.total_steps, loss);
            if self.evaluates_after(self.step - 1) {
                let r = self.evaluate(start.elapsed().as_secs_f64())?;
                obs.eval(&r)?;
                last = Some(r);
            }
            let due = ctl
                .checkpoint_every
                .is_some_and(|n| self.step.is_multiple_of(n));
            let stop = ctl.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
                && self.step < self.total_steps;
            if due || stop {
                self.sync_host()?;
                self.checkpoint().save(&ctl.checkpoint_path)?;
            }
            if stop {
                return Ok(Outcome::Interrupted { step: self.step });
            }
        }
        let last = match last {
            Some(r) => r,
            None => self.evaluate(start.elapsed().as_secs_f64())?,
        };
        self.sync_host()?;
        let train_s = self.train_time.as_secs_f64();
        Ok(Outcome::Finished(Summary {
            last,
            train_s,
            total_s: start.elapsed().as_secs_f64(),
            samples_per_s: self.samples as f64 / train_s.max(1e-9),
        }))
    }

    /// The trained model, with the configuration and data checksums recorded.
    pub fn model(&self, mut metadata: BTreeMap<String, String>) -> Model {
        metadata.insert(
            CONFIG_KEY.into(),
            serde_json::to_string(&self.cfg).unwrap_or_default(),
        );
        metadata.insert(
            "scratchnet.data_sha256".into(),
            serde_json::to_string(&self.data.checksums).unwrap_or_default(),
        );
        metadata.insert("scratchnet.steps".into(), self.step.to_string());
        Model {
            layout: self.net.layout.clone(),
            params: self.params.to_vec(),
            metadata,
            extra: BTreeMap::new(),
        }
    }

    /// Everything needed to continue exactly where this run is: the model,
    /// the optimiser's state, the step and the scheduled L2 factors. (Batches,
    /// dropout masks and shifts are functions of (seed, step): no generator
    /// state needs saving.)
    pub fn checkpoint(&self) -> Model {
        let (t, buffers) = self.opt.state();
        let state = CheckpointState {
            step: self.step,
            factors: self.factors.clone(),
            optimizer_steps: t,
        };
        let mut meta = BTreeMap::new();
        meta.insert(
            CHECKPOINT_KEY.into(),
            serde_json::to_string(&state).unwrap_or_default(),
        );
        let mut m = self.model(meta);
        m.extra = buffers
            .into_iter()
            .map(|(n, v)| {
                let mut v = v.to_vec();
                self.net.layout.to_row_major(&mut v);
                (format!("{STATE_PREFIX}{n}"), v)
            })
            .collect();
        m
    }

    /// Continues a run from a [`Trainer::checkpoint`].
    pub fn resume(ckpt: &Model, data: &'d Dataset, threads: usize) -> Result<Trainer<'d>> {
        let meta = |k: &str| {
            ckpt.metadata
                .get(k)
                .with_context(|| format!("not a scratchnet checkpoint: no `{k}` in its metadata"))
        };
        let cfg: TrainConfig =
            serde_json::from_str(meta(CONFIG_KEY)?).context("checkpoint configuration")?;
        let state: CheckpointState =
            serde_json::from_str(meta(CHECKPOINT_KEY)?).context("checkpoint state")?;
        // Checked first: starting weights of another shape are a bug.
        if cfg.arch(data.features(), CLASSES)? != ckpt.layout.arch {
            bail!(
                "the checkpoint's network does not fit this data ({} inputs)",
                data.features()
            );
        }
        let mut rows = ckpt.params.clone();
        ckpt.layout.to_row_major(&mut rows);
        let mut t = Trainer::new(cfg, data, threads, Some(rows))?;
        if state.factors.len() != t.factors.len() || state.step > t.total_steps {
            bail!("checkpoint state does not match its configuration");
        }
        // The file's order to the layout's (buffers of another length are
        // refused by `restore`).
        let layout = &t.net.layout;
        let buffers: BTreeMap<&str, Vec<f32>> = ckpt
            .extra
            .iter()
            .map(|(n, v)| {
                let mut v = v.clone();
                if v.len() == layout.len {
                    layout.from_row_major(&mut v);
                }
                (n.as_str(), v)
            })
            .collect();
        t.opt.restore(state.optimizer_steps, |n| {
            buffers
                .get(format!("{STATE_PREFIX}{n}").as_str())
                .map(Vec::as_slice)
        })?;
        t.step = state.step;
        t.factors = state.factors;
        Ok(t)
    }
}

/// A run on the GPU: the network there, the splits uploaded, the batch
/// buffer and the last loss read back.
#[cfg(feature = "cuda")]
struct GpuState {
    net: crate::gpu::GpuNet,
    train: crate::gpu::GpuSplit,
    val: crate::gpu::GpuSplit,
    test: crate::gpu::GpuSplit,
    batch: crate::gpu::GpuSplit,
    shifts: Vec<(isize, isize)>,
    last_loss: f64,
}

/// Compressed forms of the splits (for the sparse first layer), and the
/// reused buffers of the compressed minibatches.
struct SparseData {
    train: TrainRows,
    val: PairedSplit,
    test: PairedSplit,
    /// This step's batch and the next one's, prepared while this one computes.
    batches: [Batch; 2],
}

/// The training images, compressed.
enum TrainRows {
    /// Minibatches are gathered from these rows.
    Batches(SparseRows),
    /// Every batch is the whole split: its images merged in pairs, labels
    /// reordered alike (the loss and the weight gradient are sums over all
    /// images, so only their rounding depends on the order), and the same
    /// by column for the weight gradient.
    Whole {
        rows: PairedSplit,
        by_column: ColumnBlocks,
    },
}

/// A compressed minibatch: rows, the same by column, labels.
#[derive(Default)]
struct Batch {
    /// The step whose batch this is.
    step: Option<usize>,
    rows: SparseRows,
    by_column: ColumnBlocks,
    labels: Vec<u8>,
}

impl Batch {
    /// Makes this step `step`'s batch.
    fn fill(&mut self, batcher: &mut Batcher, split: &Split, train: &SparseRows, step: usize) {
        let labels = batcher.get_compressed(split, train, step, &mut self.rows);
        self.labels.clear();
        self.labels.extend_from_slice(labels);
        self.by_column.fill(self.rows.view(), GRAD_BLOCK_ROWS);
        self.step = Some(step);
    }

    fn input(&self) -> Input<'_> {
        Input::Sparse {
            rows: self.rows.view(),
            by_column: Some(&self.by_column),
        }
    }
}

impl SparseData {
    /// `None` unless the training images are sparse enough.
    fn new(data: &Dataset, whole_split: bool) -> Option<SparseData> {
        let f = data.features();
        let train = SparseRows::compress_if_sparse(&data.train.images, f)?;
        let train = if whole_split {
            // Regrouped from the pairs, so the unpaired rows can go first
            // (peak memory).
            let rows = PairedSplit::new(train, &data.train.labels);
            let by_column = ColumnBlocks::new(rows.rows.view(), GRAD_BLOCK_ROWS);
            TrainRows::Whole { rows, by_column }
        } else {
            TrainRows::Batches(train)
        };
        let paired = |s: &Split| PairedSplit::new(SparseRows::from_dense(&s.images, f), &s.labels);
        Some(SparseData {
            val: paired(&data.val),
            test: paired(&data.test),
            train,
            batches: Default::default(),
        })
    }
}

/// Compressed images merged in pairs of similar ones (the forward
/// product's fastest form, see [`crate::tensor::pairs`]), and their labels
/// in the same order (accuracy does not depend on the order).
struct PairedSplit {
    rows: PairRows,
    labels: Vec<u8>,
}

impl PairedSplit {
    fn new(images: SparseRows, labels: &[u8]) -> PairedSplit {
        let order = pair_order(images.view());
        PairedSplit {
            rows: PairRows::from_rows(images.view(), &order),
            labels: order.iter().map(|&r| labels[r as usize]).collect(),
        }
    }
}

/// Where and when [`Trainer::run`] writes checkpoints, and its stop flag.
pub struct RunControl<'a> {
    pub checkpoint_every: Option<usize>,
    pub checkpoint_path: PathBuf,
    pub interrupt: Option<&'a AtomicBool>,
}

/// How [`Trainer::run`] ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(Summary),
    /// Stopped on request after `step` steps; a checkpoint was written.
    Interrupted {
        step: usize,
    },
}

/// Metadata keys of models and checkpoints.
pub const CONFIG_KEY: &str = "scratchnet.config";
pub const CHECKPOINT_KEY: &str = "scratchnet.checkpoint";

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    factors: Vec<f32>,
    optimizer_steps: u64,
}
