//! The network's step on the GPU: forward, softmax + cross-entropy,
//! backward, L2 and the optimiser, all on device buffers.

use crate::data::Split;
use crate::nn::dropout::{mix64, DropoutMode};
use crate::nn::softmax_ce::score;
use crate::nn::{Activation, Layout, Score};
use crate::optim::{Adam, Optimizer};
use anyhow::{Context, Result};
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchConfig,
    PushKernelArg,
};
use std::sync::Arc;

const SOURCE: &str = include_str!("kernels.cu");

/// Rows evaluated at once when measuring accuracy.
const EVAL_ROWS: usize = 8192;

struct Kernels {
    bias_act_forward: CudaFunction,
    act_backward: CudaFunction,
    softmax_ce: CudaFunction,
    non_finite: CudaFunction,
    sum_f64: CudaFunction,
    add_scaled: CudaFunction,
    adam: CudaFunction,
    sgd: CudaFunction,
    gather_shift: CudaFunction,
}

/// A split's images and labels, uploaded once (labels also kept here).
pub struct GpuSplit {
    x: CudaSlice<f32>,
    y: CudaSlice<u8>,
    labels: Vec<u8>,
    rows: usize,
}

impl GpuSplit {
    /// Number of samples.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// The batch of one step.
pub enum GpuStep<'a> {
    /// The whole split (full batch, no augmentation).
    Whole(&'a GpuSplit),
    /// Rows `ids` of the split, each moved by its `(dx, dy)`, gathered into
    /// `into` (from [`GpuNet::batch_buffer`]).
    Rows {
        split: &'a GpuSplit,
        ids: &'a [u32],
        shifts: &'a [(isize, isize)],
        shape: (usize, usize),
        into: &'a mut GpuSplit,
    },
}

/// The optimiser's state on the device.
enum DeviceOpt {
    /// The moments here; the step count and settings in `host` (whose own
    /// moments are left empty).
    Adam {
        v: CudaSlice<f32>,
        s: CudaSlice<f32>,
        host: Adam,
    },
    Sgd {
        u: CudaSlice<f32>,
        momentum: f32,
    },
}

/// A network, its gradients, optimiser state and activations on one GPU.
pub struct GpuNet {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    layout: Layout,
    params: CudaSlice<f32>,
    grads: CudaSlice<f32>,
    opt: DeviceOpt,
    /// Per layer: outputs (logits, then dZ, for the last).
    acts: Vec<CudaSlice<f32>>,
    /// Per hidden layer: dA, then dZ in place.
    dacts: Vec<CudaSlice<f32>>,
    cols: Vec<Columns>,
    ones: CudaSlice<f32>,
    /// Per-row losses or hits, and their sum.
    scratch: CudaSlice<f64>,
    total: CudaSlice<f64>,
    capacity: usize,
}

fn launch_cfg(n: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(n.max(1) as u32)
}

impl GpuNet {
    /// Uploads `params` and the optimiser's state (every weight in rows, as
    /// the device holds them); buffers for batches of up to `capacity`
    /// rows; `keeps` per hidden branch.
    pub fn new(
        ctx: &Arc<CudaContext>,
        layout: &Layout,
        params: &[f32],
        opt: &Optimizer,
        keeps: &[f32],
        capacity: usize,
    ) -> Result<GpuNet> {
        let stream = ctx.default_stream();
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE).context("compiling the CUDA kernels")?;
        let module = ctx.load_module(ptx)?;
        let f = |name: &str| {
            module
                .load_function(name)
                .with_context(|| format!("CUDA kernel {name}"))
        };
        let k = Kernels {
            bias_act_forward: f("bias_act_forward")?,
            act_backward: f("act_backward")?,
            softmax_ce: f("softmax_ce")?,
            non_finite: f("non_finite")?,
            sum_f64: f("sum_f64")?,
            add_scaled: f("add_scaled")?,
            adam: f("adam")?,
            sgd: f("sgd")?,
            gather_shift: f("gather_shift")?,
        };
        let rows = capacity.max(EVAL_ROWS);
        let last = layout.layers.len() - 1;
        let mut cols = Vec::new();
        for layer in &layout.layers {
            let mut codes = vec![0i32; layer.outputs];
            let mut kp = vec![1.0f32; layer.outputs];
            for b in &layer.branches {
                let code = match b.act {
                    None => 0,
                    Some(Activation::Relu) => 1,
                    Some(Activation::Tanh) => 2,
                };
                codes[b.cols.clone()].fill(code);
                if b.act.is_some() {
                    kp[b.cols.clone()].fill(keeps.get(b.index).copied().unwrap_or(1.0));
                }
            }
            cols.push(Columns {
                dropped: kp.iter().any(|&k| k < 1.0),
                act: stream.clone_htod(&codes)?,
                keep: stream.clone_htod(&kp)?,
            });
        }
        let opt = match opt {
            Optimizer::Adam(a) => DeviceOpt::Adam {
                v: stream.clone_htod(&a.v)?,
                s: stream.clone_htod(&a.s)?,
                host: Adam {
                    v: Vec::new(),
                    s: Vec::new(),
                    ..a.clone()
                },
            },
            Optimizer::Sgd(s) => DeviceOpt::Sgd {
                u: stream.clone_htod(&s.velocity)?,
                momentum: s.momentum,
            },
        };
        let alloc = |n: usize| stream.alloc_zeros::<f32>(n.max(1));
        Ok(GpuNet {
            blas: CudaBlas::new(stream.clone())?,
            params: stream.clone_htod(params)?,
            grads: alloc(layout.len)?,
            opt,
            acts: layout
                .layers
                .iter()
                .map(|l| alloc(rows * l.outputs))
                .collect::<Result<_, _>>()?,
            dacts: layout.layers[..last]
                .iter()
                .map(|l| alloc(rows * l.outputs))
                .collect::<Result<_, _>>()?,
            cols,
            ones: stream.clone_htod(&vec![1.0f32; rows])?,
            scratch: stream.alloc_zeros::<f64>(rows.max(layout.len))?,
            total: stream.alloc_zeros::<f64>(1)?,
            capacity,
            layout: layout.clone(),
            k,
            stream,
        })
    }

    /// Device buffers for a gathered minibatch of up to `rows` rows.
    pub fn batch_buffer(&self, rows: usize) -> Result<GpuSplit> {
        Ok(GpuSplit {
            x: self
                .stream
                .alloc_zeros::<f32>((rows * self.layout.arch.inputs).max(1))?,
            y: self.stream.alloc_zeros::<u8>(rows.max(1))?,
            labels: Vec::new(),
            rows,
        })
    }

    /// Uploads a split.
    pub fn upload(&self, split: &Split) -> Result<GpuSplit> {
        self.upload_images(&split.images.floats(), &split.labels)
    }

    /// Uploads images (`[n, inputs]`) and their labels (all zero when the
    /// labels are unknown, as for `predict`).
    pub fn upload_images(&self, images: &[f32], labels: &[u8]) -> Result<GpuSplit> {
        let mut out = self.batch_buffer(labels.len())?;
        if !labels.is_empty() {
            self.stream.memcpy_htod(images, &mut out.x)?;
            self.stream.memcpy_htod(labels, &mut out.y)?;
        }
        out.labels = labels.to_vec();
        Ok(out)
    }

    /// One training step. `factors` are the L2 factors, `n` the training-set
    /// size; `dropout` the mode and key of this step's masks. Returns the
    /// mean cross-entropy only when `want_loss` (reading it waits for the GPU).
    pub fn step(
        &mut self,
        batch: GpuStep<'_>,
        lr: f32,
        factors: &[f32],
        n: usize,
        dropout: Option<(DropoutMode, u64)>,
        want_loss: bool,
    ) -> Result<Option<f64>> {
        let (data, rows): (&GpuSplit, usize) = match batch {
            GpuStep::Whole(s) => (s, s.rows),
            GpuStep::Rows {
                split,
                ids,
                shifts,
                shape,
                into,
            } => {
                self.gather(split, ids, shifts, shape, into)?;
                (into, ids.len())
            }
        };
        assert!(
            rows <= self.capacity.max(EVAL_ROWS),
            "batch exceeds capacity"
        );
        let x = data.x.slice(..rows * self.layout.arch.inputs);
        let y = data.y.slice(..rows);
        self.forward(&x, rows, dropout)?;
        let last = self.layout.layers.len() - 1;
        let classes = self.layout.arch.classes;
        {
            let mut b = self.stream.launch_builder(&self.k.softmax_ce);
            let (rows_i, classes_i, scale) = (rows as i64, classes as i32, 1.0f32 / rows as f32);
            b.arg(&mut self.acts[last])
                .arg(&y)
                .arg(&rows_i)
                .arg(&classes_i)
                .arg(&scale)
                .arg(&mut self.scratch);
            // SAFETY: the arguments match the kernel's signature and sizes.
            unsafe { b.launch(launch_cfg(rows)) }?;
        }
        let loss = if want_loss {
            Some(self.sum_scratch(rows)? / rows as f64)
        } else {
            None
        };
        self.backward(&x, rows, dropout)?;
        for (w, &f) in self.layout.weights.iter().zip(factors) {
            let mut g = self.grads.slice_mut(w.range.clone());
            let p = self.params.slice(w.range.clone());
            let (k, len) = (f / n as f32, w.range.len() as i64);
            let mut b = self.stream.launch_builder(&self.k.add_scaled);
            b.arg(&mut g).arg(&p).arg(&k).arg(&len);
            // SAFETY: as above.
            unsafe { b.launch(launch_cfg(w.range.len())) }?;
        }
        self.optimizer_step(lr)?;
        Ok(loss)
    }

    /// Copies rows `ids` of `split`, shifted, into the batch buffers;
    /// checks what the kernel's unchecked reads rely on: every id a row of
    /// `split`, a shift for each, images of the network's inputs.
    fn gather(
        &mut self,
        split: &GpuSplit,
        ids: &[u32],
        shifts: &[(isize, isize)],
        (h, w): (usize, usize),
        into: &mut GpuSplit,
    ) -> Result<()> {
        if let Some(i) = ids.iter().find(|&&i| i as usize >= split.rows) {
            anyhow::bail!("row {i} asked of a split of {} rows", split.rows);
        }
        anyhow::ensure!(
            shifts.len() == ids.len(),
            "{} shifts for {} rows",
            shifts.len(),
            ids.len()
        );
        anyhow::ensure!(
            h * w == self.layout.arch.inputs,
            "images of {h}x{w} for a network of {} inputs",
            self.layout.arch.inputs
        );
        anyhow::ensure!(
            ids.len() <= into.rows,
            "{} rows for a batch buffer of {}",
            ids.len(),
            into.rows
        );
        let ids_i: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        let dx: Vec<i32> = shifts.iter().map(|s| s.0 as i32).collect();
        let dy: Vec<i32> = shifts.iter().map(|s| s.1 as i32).collect();
        let (ids_d, dx_d, dy_d) = (
            self.stream.clone_htod(&ids_i)?,
            self.stream.clone_htod(&dx)?,
            self.stream.clone_htod(&dy)?,
        );
        let (rows, h_i, w_i) = (ids.len() as i64, h as i32, w as i32);
        let mut b = self.stream.launch_builder(&self.k.gather_shift);
        b.arg(&mut into.x)
            .arg(&mut into.y)
            .arg(&split.x)
            .arg(&split.y)
            .arg(&ids_d)
            .arg(&dx_d)
            .arg(&dy_d)
            .arg(&rows)
            .arg(&h_i)
            .arg(&w_i);
        // SAFETY: one thread per pixel of `ids.len()` rows; each reads row
        // ids[r] of `split` (a row of it, checked above) and writes row r
        // of `into` (which has room for every r, checked above).
        unsafe { b.launch(launch_cfg(ids.len() * h * w)) }?;
        Ok(())
    }

    /// The forward pass of `rows` rows of `x` into `acts`.
    fn forward(
        &mut self,
        x: &CudaView<'_, f32>,
        rows: usize,
        dropout: Option<(DropoutMode, u64)>,
    ) -> Result<()> {
        for l in 0..self.layout.layers.len() {
            let layer = self.layout.layers[l].clone();
            let (before, rest) = self.acts.split_at_mut(l);
            let mut z = rest[0].slice_mut(..rows * layer.outputs);
            let inp = if l == 0 {
                x.slice(..)
            } else {
                before[l - 1].slice(..rows * layer.inputs)
            };
            let w = self.params.slice(layer.w.clone());
            gemm_rm(
                &self.blas,
                &mut z,
                &inp,
                &w,
                (rows, layer.outputs, layer.inputs),
                (false, true),
                0.0,
            )?;
            let bias = self.params.slice(layer.b.clone());
            let f = &self.k.bias_act_forward;
            activation_kernel(&self.stream, f, &mut z, &bias, &self.cols[l], l, dropout)?;
        }
        Ok(())
    }

    /// Gradients of every parameter into `grads`, from dZ of the last layer.
    fn backward(
        &mut self,
        x: &CudaView<'_, f32>,
        rows: usize,
        dropout: Option<(DropoutMode, u64)>,
    ) -> Result<()> {
        let last = self.layout.layers.len() - 1;
        for l in (0..=last).rev() {
            let layer = self.layout.layers[l].clone();
            let (lower, upper) = self.dacts.split_at_mut(l.min(last));
            let dz = if l == last {
                self.acts[last].slice(..rows * layer.outputs)
            } else {
                upper[0].slice(..rows * layer.outputs)
            };
            let inp = if l == 0 {
                x.slice(..)
            } else {
                self.acts[l - 1].slice(..rows * layer.inputs)
            };
            let shape = (layer.outputs, layer.inputs, rows);
            gemm_rm(
                &self.blas,
                &mut self.grads.slice_mut(layer.w.clone()),
                &dz,
                &inp,
                shape,
                (true, false),
                0.0,
            )?;
            // db = 1ᵀ · dZ.
            gemm_rm(
                &self.blas,
                &mut self.grads.slice_mut(layer.b.clone()),
                &self.ones.slice(..rows),
                &dz,
                (1, layer.outputs, rows),
                (false, false),
                0.0,
            )?;
            if l == 0 {
                continue;
            }
            let mut da = lower[l - 1].slice_mut(..rows * layer.inputs);
            let w = self.params.slice(layer.w.clone());
            gemm_rm(
                &self.blas,
                &mut da,
                &dz,
                &w,
                (rows, layer.inputs, layer.outputs),
                (false, false),
                0.0,
            )?;
            let a = self.acts[l - 1].slice(..rows * layer.inputs);
            let f = &self.k.act_backward;
            let cols = &self.cols[l - 1];
            activation_kernel(&self.stream, f, &mut da, &a, cols, l - 1, dropout)?;
        }
        Ok(())
    }

    fn optimizer_step(&mut self, lr: f32) -> Result<()> {
        let n = self.layout.len as i64;
        let cfg = launch_cfg(self.layout.len);
        match &mut self.opt {
            DeviceOpt::Adam { v, s, host } => {
                host.t += 1;
                let [step, inv_sqrt_c2] = host.scalars(lr);
                let (b1, b2, e) = (host.beta1, host.beta2, host.eps);
                let mut b = self.stream.launch_builder(&self.k.adam);
                b.arg(&mut self.params)
                    .arg(&self.grads)
                    .arg(v)
                    .arg(s)
                    .arg(&n)
                    .arg(&b1)
                    .arg(&b2)
                    .arg(&e)
                    .arg(&step)
                    .arg(&inv_sqrt_c2);
                // SAFETY: as above.
                unsafe { b.launch(cfg) }?;
            }
            DeviceOpt::Sgd { u, momentum } => {
                let mu = *momentum;
                let mut b = self.stream.launch_builder(&self.k.sgd);
                b.arg(&mut self.params)
                    .arg(&self.grads)
                    .arg(u)
                    .arg(&n)
                    .arg(&mu)
                    .arg(&lr);
                // SAFETY: as above.
                unsafe { b.launch(cfg) }?;
            }
        }
        Ok(())
    }

    /// Σ scratch[..n], read back to the host.
    fn sum_scratch(&mut self, n: usize) -> Result<f64> {
        let n_i = n as i64;
        let mut b = self.stream.launch_builder(&self.k.sum_f64);
        b.arg(&self.scratch).arg(&n_i).arg(&mut self.total);
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: as above; one block of 1024 threads, as the kernel assumes.
        unsafe { b.launch(cfg) }?;
        Ok(self.stream.clone_dtoh(&self.total)?[0])
    }

    /// Fraction of `split` predicted right (argmax of the logits, the first
    /// on ties), without dropout.
    pub fn accuracy(&mut self, split: &GpuSplit) -> Result<f64> {
        Ok(self.score(split)?.accuracy)
    }

    /// Accuracy and mean cross-entropy of `split`, without dropout.
    pub fn score(&mut self, split: &GpuSplit) -> Result<Score> {
        if split.rows == 0 {
            return Ok(Score {
                accuracy: f64::NAN,
                loss: f64::NAN,
                predicted: Vec::new(),
            });
        }
        let classes = self.layout.arch.classes;
        let logits = self.logits(split)?;
        let mut predicted = Vec::with_capacity(split.rows);
        let (right, loss) = score(&logits, &split.labels, classes, &mut predicted);
        let n = split.rows as f64;
        Ok(Score {
            accuracy: right as f64 / n,
            loss: loss / n,
            predicted,
        })
    }

    /// The logits of every row of `split` (`[rows, classes]`), without dropout.
    pub fn logits(&mut self, split: &GpuSplit) -> Result<Vec<f32>> {
        let (inputs, classes) = (self.layout.arch.inputs, self.layout.arch.classes);
        let chunk = self.capacity.max(EVAL_ROWS);
        let last = self.layout.layers.len() - 1;
        let mut out = Vec::with_capacity(split.rows * classes);
        for first in (0..split.rows).step_by(chunk) {
            let rows = chunk.min(split.rows - first);
            let x = split.x.slice(first * inputs..(first + rows) * inputs);
            self.forward(&x, rows, None)?;
            out.extend(
                self.stream
                    .clone_dtoh(&self.acts[last].slice(..rows * classes))?,
            );
        }
        Ok(out)
    }

    /// Number of parameters that are infinite or NaN.
    pub fn non_finite(&mut self) -> Result<usize> {
        let n = self.layout.len as i64;
        let mut b = self.stream.launch_builder(&self.k.non_finite);
        b.arg(&self.params).arg(&n).arg(&mut self.scratch);
        // SAFETY: as above.
        unsafe { b.launch(launch_cfg(self.layout.len)) }?;
        Ok(self.sum_scratch(self.layout.len)? as usize)
    }

    /// Waits for the queued work to finish (for timing).
    pub fn synchronize(&self) -> Result<()> {
        Ok(self.stream.synchronize()?)
    }

    /// The parameters, downloaded (every weight in rows).
    pub fn params(&self) -> Result<Vec<f32>> {
        Ok(self.stream.clone_dtoh(&self.params)?)
    }

    /// The optimiser with its state, downloaded (for checkpoints).
    pub fn optimizer(&self) -> Result<Optimizer> {
        Ok(match &self.opt {
            DeviceOpt::Adam { v, s, host } => Optimizer::Adam(Adam {
                v: self.stream.clone_dtoh(v)?,
                s: self.stream.clone_dtoh(s)?,
                ..host.clone()
            }),
            DeviceOpt::Sgd { u, momentum } => Optimizer::Sgd(crate::optim::Sgd {
                velocity: self.stream.clone_dtoh(u)?,
                momentum: *momentum,
            }),
        })
    }
}

/// Per layer: each column's activation code (0 none, 1 relu, 2 tanh) and
/// keep probability, and whether any keep is below 1.
struct Columns {
    act: CudaSlice<i32>,
    keep: CudaSlice<f32>,
    dropped: bool,
}

/// Launches `bias_act_forward` or `act_backward` (one signature) on layer
/// `l`'s block `x` (rows of `cols.act.len()`), with `y` the bias or outputs.
fn activation_kernel(
    stream: &CudaStream,
    f: &CudaFunction,
    x: &mut CudaViewMut<'_, f32>,
    y: &CudaView<'_, f32>,
    cols: &Columns,
    l: usize,
    dropout: Option<(DropoutMode, u64)>,
) -> Result<()> {
    let (mode, key) = mask_args(dropout, cols.dropped, l);
    let width = cols.act.len();
    let rows = x.len() / width;
    let (rows_i, width_i) = (rows as i64, width as i32);
    let mut b = stream.launch_builder(f);
    b.arg(x)
        .arg(y)
        .arg(&cols.act)
        .arg(&cols.keep)
        .arg(&rows_i)
        .arg(&width_i)
        .arg(&mode)
        .arg(&key);
    // SAFETY: the arguments match the kernel's signature and sizes.
    unsafe { b.launch(launch_cfg(rows * width)) }?;
    Ok(())
}

/// The kernel's dropout mode code and the layer's mask key.
fn mask_args(dropout: Option<(DropoutMode, u64)>, dropped: bool, layer: usize) -> (i32, u64) {
    match dropout {
        Some((mode, key)) if dropped => (
            match mode {
                DropoutMode::Unit => 1,
                DropoutMode::Sample => 2,
            },
            mix64(key ^ layer as u64),
        ),
        _ => (0, 0),
    }
}

/// Row-major `c = op(a) · op(b)` (+ `beta c`) with `op(a)` `m x k` and
/// `op(b)` `k x n`; `ta`/`tb` say the operand is stored transposed. cuBLAS
/// is column-major, so it computes `cᵀ = op(b)ᵀ · op(a)ᵀ`.
fn gemm_rm(
    blas: &CudaBlas,
    c: &mut CudaViewMut<'_, f32>,
    a: &CudaView<'_, f32>,
    b: &CudaView<'_, f32>,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    beta: f32,
) -> Result<()> {
    let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
    let cfg = GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: if tb { k } else { n } as i32,
        ldb: if ta { m } else { k } as i32,
        beta,
        ldc: n as i32,
    };
    // SAFETY: the views hold the sizes the shapes imply (the callers slice
    // them so), and `c` does not alias `a` or `b`.
    unsafe { blas.gemm(cfg, b, a, c) }?;
    Ok(())
}
