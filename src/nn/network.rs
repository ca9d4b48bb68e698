//! The network: forward through every layer, softmax and cross-entropy,
//! and backward, over preallocated buffers.
//!
//! For the notebook's `784 -> [ReLU 128 ‖ tanh 64] -> ReLU 48 -> softmax 10`
//! (rows are samples; `m` rows in a batch):
//! ```text
//! forward                                   backward
//! Z1 = X·W1ᵀ           [m, 192]             dZ3 = (A3 - Y) / m
//! A1 = [relu(Z11+b11) ‖ tanh(Z12+b12)]·s1   dW3 = dZ3ᵀ·A2, db3 = Σ dZ3, dA2 = dZ3·W3
//! Z2 = A1·W2ᵀ, A2 = relu(Z2+b2)·s2  [m, 48] dZ2 = dA2 ∘ relu'·s2
//! Z3 = A2·W3ᵀ + b3     [m, 10]              dW2 = dZ2ᵀ·A1, db2 = Σ dZ2, dA1 = dZ2·W2
//! A3 = softmax(Z3)                          dZ1 = dA1 ∘ [relu' ‖ 1 - tanh²]·s1
//! J  = -Σ log(A3[y] + 1e-7) / m             dW1 = dZ1ᵀ·X, db1 = Σ dZ1
//! ```
//! (W1 stacks W11 and W12; `s` are the dropout scales, 0 or 1/keep.) Any
//! `--arch` runs the same way: a first layer, then dense layers.
//!
//! The rows go through in blocks ([`RowBlocks`]): a minibatch as one block
//! whose products use every thread, a full batch a block at a time, each
//! through every layer on one thread while its activations are in cache.
//! The arithmetic is the same either way.

use super::dense::{self, Dims};
use super::dropout::{Dropout, Masks, PassMasks};
use super::first_layer::{Input, Prepared, Scratch, TrainInput};
use super::layout::{LayerLayout, Layout};
use super::params::Params;
use super::{activation, softmax_ce};
use crate::tensor::par::{RowBlock, RowBlocks};
use crate::tensor::Aligned;
use std::ops::Range;

/// Up to this many rows (a minibatch) go as one block on every thread: cut
/// into blocks, they would leave threads idle.
const FEW_ROWS: usize = 512;

/// Activations, their gradients and dropout scales for up to `capacity` rows.
#[derive(Debug)]
pub struct Workspace {
    pass: Activations,
    /// dA, then dZ in place, for the hidden layers. Aligned, as are the
    /// activations: the sparse weight gradient reads `dZ1` by 16-float rows.
    grads: Vec<Aligned>,
    first: Scratch,
    /// Each block's share of the gradients of the layers after the first
    /// (a backward pass over many rows; grown on first use).
    partials: Vec<f32>,
}

/// What a forward pass writes, and the backward pass reads.
#[derive(Debug)]
struct Activations {
    capacity: usize,
    /// Layer outputs `[rows, outputs]`; the last holds logits, then dZ.
    acts: Vec<Aligned>,
    masks: Masks,
}

impl Workspace {
    pub fn capacity(&self) -> usize {
        self.pass.capacity
    }
}

/// A network of a given layout, run on `threads` threads.
#[derive(Clone, Debug)]
pub struct Network {
    pub layout: Layout,
    pub threads: usize,
}

/// What the backward pass reads of the forward pass.
struct Saved<'a> {
    acts: &'a [Aligned],
    masks: &'a Masks,
    keeps: &'a [f32],
}

impl Network {
    pub fn new(layout: Layout, threads: usize) -> Network {
        Network {
            layout,
            threads: threads.max(1),
        }
    }

    /// Buffers for batches of up to `capacity` rows.
    pub fn workspace(&self, capacity: usize) -> Workspace {
        let layers = &self.layout.layers;
        let hidden = &layers[..layers.len() - 1];
        let zeros = |l: &LayerLayout| Aligned::zeros(capacity * l.outputs);
        Workspace {
            pass: Activations {
                capacity,
                acts: layers.iter().map(zeros).collect(),
                masks: Masks::new(hidden.len()),
            },
            grads: hidden.iter().map(zeros).collect(),
            first: Default::default(),
            partials: Vec::new(),
        }
    }

    /// Forward pass over the rows of `x`; returns the logits
    /// `[rows, classes]`. With `dropout`, hidden outputs are masked.
    pub fn forward<'w>(
        &self,
        params: &Params,
        x: Input<'_>,
        ws: &'w mut Workspace,
        dropout: Option<&Dropout<'_>>,
    ) -> &'w mut [f32] {
        let x1 = params.prepare_first(x, &mut ws.first);
        self.forward_prepared(params, &x1, &mut ws.pass, dropout)
    }

    /// [`Network::forward`] of an input paired with the first layer's
    /// weight as its form reads it.
    fn forward_prepared<'w>(
        &self,
        params: &Params,
        x1: &Prepared<'_>,
        pass: &'w mut Activations,
        dropout: Option<&Dropout<'_>>,
    ) -> &'w mut [f32] {
        let layers = &self.layout.layers;
        let rows = x1.rows();
        let Activations {
            capacity,
            acts,
            masks,
        } = pass;
        assert!(
            rows <= *capacity,
            "batch of {rows} exceeds the workspace's {capacity}"
        );
        let (masks, per_sample) = masks.prepare(&layers[..layers.len() - 1], rows, dropout);
        let bufs = acts
            .iter_mut()
            .zip(layers)
            .map(|(a, l)| (&mut a[..], l.outputs))
            .chain(per_sample)
            .collect();
        RowBlocks::new(rows, FEW_ROWS, self.threads, bufs)
            .for_each(|b| self.forward_block(params, x1, &masks, b));
        &mut acts[layers.len() - 1][..rows * self.layout.arch.classes]
    }

    /// One block of rows through every layer: its rows of each layer's
    /// output, then of each hidden layer's per-sample dropout scales.
    fn forward_block(
        &self,
        params: &Params,
        x1: &Prepared<'_>,
        masks: &PassMasks<'_>,
        b: RowBlock<'_>,
    ) {
        let layers = &self.layout.layers;
        let (r, threads, mut bufs) = (b.rows, b.threads, b.bufs);
        let (acts, scales) = bufs.split_at_mut(layers.len());
        let x1 = x1.slice(r.clone());
        for (l, layer) in layers.iter().enumerate() {
            let (below, here) = acts.split_at_mut(l);
            let z = &mut *here[0];
            match below.last() {
                // Z1 = X·W1ᵀ
                None => x1.forward(z, threads),
                // Z = A·Wᵀ
                Some(a) => {
                    let w = params.tensor(layer.w.clone());
                    dense::forward(z, a, w, dims(layer, r.len()), threads)
                }
            }
            // A = act(Z + b)·s (the last layer's Z + b: the logits)
            let s = masks.block(l, layer, r.start, scales.get_mut(l).map(|s| &mut **s));
            let bias = params.tensor(layer.b.clone());
            activation::forward_rows(z, layer.outputs, bias, &layer.branches, s);
        }
    }

    /// Forward with `dropout`, the mean cross-entropy of `labels`, and the
    /// backward pass writing every parameter's gradient into `grads` (in
    /// the storage order of `params`). Returns the mean cross-entropy (no
    /// L2 term).
    pub fn loss_and_grads(
        &self,
        params: &Params,
        grads: &mut [f32],
        x: TrainInput<'_>,
        labels: &[u8],
        ws: &mut Workspace,
        dropout: Option<&Dropout<'_>>,
    ) -> f64 {
        let rows = labels.len();
        let x_rows = x.forward().rows(self.layout.arch.inputs);
        assert_eq!(x_rows, rows, "one label per input row");
        let classes = self.layout.arch.classes;
        let logits = self.forward(params, x.forward(), ws, dropout);
        // A3 = softmax(Z3), J = -Σ log(A3[y] + 1e-7) / m; dZ3 = (A3 - Y) / m
        // in place of the logits.
        let loss = softmax_ce::loss_and_grad(logits, labels, classes, 1.0 / rows as f32);
        let keeps = dropout.map(|d| d.keeps).unwrap_or(&[]);
        self.backward(params, grads, x, rows, ws, keeps);
        loss / rows as f64
    }

    fn backward(
        &self,
        params: &Params,
        grads: &mut [f32],
        x: TrainInput<'_>,
        rows: usize,
        ws: &mut Workspace,
        keeps: &[f32],
    ) {
        let layers = &self.layout.layers;
        let Workspace {
            pass,
            grads: dacts,
            first: scratch,
            partials,
        } = ws;
        let saved = Saved {
            acts: &pass.acts,
            masks: &pass.masks,
            keeps,
        };
        let (first, later) = grads.split_at_mut(layers[1].w.start);
        // The layers after the first, last to first, each block of rows
        // into its own share of their gradients.
        let bufs = dacts
            .iter_mut()
            .zip(layers)
            .map(|(g, l)| (&mut g[..], l.outputs))
            .collect();
        RowBlocks::new(rows, FEW_ROWS, self.threads, bufs).sum(later, partials, |b, dwdb| {
            self.backward_block(params, &saved, b, dwdb)
        });
        // dW1 = dZ1ᵀ·X, db1 = Σ dZ1 (no gradient of the input).
        let dz1 = &dacts[0][..rows * layers[0].outputs];
        params
            .first()
            .weight_grad(first, dz1, x, self.threads, scratch);
    }

    /// One block of rows back through every layer after the first: its
    /// weight and bias gradients into `dwdb` (from the second layer's
    /// weight on), its input gradient, and from that the layer below's dZ,
    /// in place in the block's rows of the hidden gradients.
    fn backward_block(
        &self,
        params: &Params,
        saved: &Saved<'_>,
        b: RowBlock<'_>,
        dwdb: &mut [f32],
    ) {
        let layers = &self.layout.layers;
        let (last, base) = (layers.len() - 1, layers[1].w.start);
        let (r, threads, mut dacts) = (b.rows, b.threads, b.bufs);
        for l in (1..=last).rev() {
            let (layer, below) = (&layers[l], &layers[l - 1]);
            let (lower, here) = dacts.split_at_mut(l);
            let dz: &[f32] = match here.first() {
                Some(dz) => dz,
                None => &saved.acts[last][elems(&r, layer.outputs)],
            };
            let da = &mut *lower[l - 1];
            let a = &saved.acts[l - 1][elems(&r, layer.inputs)];
            let (dw, db) =
                dwdb[layer.w.start - base..layer.b.end - base].split_at_mut(layer.w.len());
            // dW = dZᵀ·A, db = Σ dZ, dA = dZ·W
            let w = params.tensor(layer.w.clone());
            let d = dims(layer, r.len());
            dense::backward(Some(&mut *da), dw, db, dz, a, w, d, threads);
            // dZ below = dA ∘ act'·s
            let s = saved.masks.rows(l - 1, below.outputs, &r);
            activation::backward_rows(da, a, below.outputs, &below.branches, saved.keeps, s);
        }
    }

    /// After a forward pass over `rows` rows whose loss was not finite, the
    /// first activation that holds a non-finite value, in the notebook's
    /// names (A1, A2, ...), or the logits, where the hidden layers are
    /// finite.
    pub fn first_non_finite(&self, ws: &Workspace, rows: usize) -> String {
        let layers = &self.layout.layers;
        let hidden = layers[..layers.len() - 1].iter().zip(&ws.pass.acts);
        for (l, (layer, a)) in hidden.enumerate() {
            if a[..rows * layer.outputs].iter().any(|v| !v.is_finite()) {
                return format!("A{} (the output of layer {})", l + 1, l + 1);
            }
        }
        format!("the logits Z{}", layers.len())
    }

    /// Calls `f(first_row, logits)` for consecutive chunks of `images`,
    /// evaluated without dropout.
    pub fn logits_chunks(
        &self,
        params: &Params,
        images: Input<'_>,
        ws: &mut Workspace,
        mut f: impl FnMut(usize, &mut [f32]),
    ) {
        let x1 = params.prepare_first(images, &mut ws.first);
        for (start, chunk) in x1.chunks(ws.pass.capacity) {
            f(
                start,
                self.forward_prepared(params, &chunk, &mut ws.pass, None),
            );
        }
    }

    /// Predicted class of each image (argmax of the logits).
    pub fn predict(&self, params: &Params, images: Input<'_>, ws: &mut Workspace) -> Vec<u8> {
        let classes = self.layout.arch.classes;
        let mut out = Vec::with_capacity(images.rows(self.layout.arch.inputs));
        self.logits_chunks(params, images, ws, |_, logits| {
            out.extend(logits.chunks_exact(classes).map(argmax))
        });
        out
    }

    /// Accuracy on `labels` and mean cross-entropy, without dropout.
    pub fn score(
        &self,
        params: &Params,
        images: Input<'_>,
        labels: &[u8],
        ws: &mut Workspace,
    ) -> Score {
        let classes = self.layout.arch.classes;
        let (mut right, mut loss) = (0, 0.0);
        let mut predicted = Vec::with_capacity(labels.len());
        self.logits_chunks(params, images, ws, |first, logits| {
            let rows = logits.len() / classes;
            let labels = &labels[first..first + rows];
            let (r, l) = softmax_ce::score(logits, labels, classes, &mut predicted);
            (right, loss) = (right + r, loss + l);
        });
        let n = labels.len() as f64;
        Score {
            accuracy: right as f64 / n,
            loss: loss / n,
            predicted,
        }
    }

    /// Fraction of `labels` predicted correctly.
    pub fn accuracy(
        &self,
        params: &Params,
        images: Input<'_>,
        labels: &[u8],
        ws: &mut Workspace,
    ) -> f64 {
        if labels.is_empty() {
            return f64::NAN;
        }
        let pred = self.predict(params, images, ws);
        pred.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
    }
}

/// How a split fares: the fraction predicted right, and the mean
/// cross-entropy (NaN for no rows), and each row's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub accuracy: f64,
    pub loss: f64,
    pub predicted: Vec<u8>,
}

/// A layer's shapes for `batch` rows.
fn dims(layer: &LayerLayout, batch: usize) -> Dims {
    Dims {
        batch,
        inputs: layer.inputs,
        outputs: layer.outputs,
    }
}

/// The elements of rows `r` of a row-major buffer of `width`-wide rows.
fn elems(r: &Range<usize>, width: usize) -> Range<usize> {
    r.start * width..r.end * width
}

/// Index of the largest value (the first, on ties).
pub fn argmax(v: &[f32]) -> u8 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u8
}
