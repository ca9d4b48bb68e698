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
//! Rows go through in one of two schedules, with the same arithmetic: a
//! few (a minibatch) as one block whose products use every thread; many (a
//! full batch, an evaluation) a block of [`BLOCK_ROWS`] at a time, each
//! block through every layer on one thread while its activations are still
//! in cache.

use super::dense::{self, Dims};
use super::dropout::{Dropout, MaskSlot, Masks};
use super::first_layer::{self, Input, Weight};
use super::param_buffer::Params;
use super::params::{LayerLayout, Layout};
use super::{activation, softmax_ce};
use crate::tensor::par::{block, for_blocks, sum_blocks, Disjoint, BLOCK_ROWS};
use crate::tensor::sparse::{ColumnParts, COLUMN_SPLIT_ROWS};
use crate::tensor::Aligned;
use rayon::prelude::*;
use std::ops::Range;

/// Batches of at most this many rows go as one block on every thread.
const FEW_ROWS: usize = COLUMN_SPLIT_ROWS;

/// Activations, their gradients and dropout scales for up to `capacity` rows.
#[derive(Debug)]
pub struct Workspace {
    capacity: usize,
    /// Layer outputs `[rows, outputs]`; the last holds logits, then dZ.
    /// Aligned, as are `grads`: the sparse weight gradient reads `dZ1` by
    /// 16-float rows.
    acts: Vec<Aligned>,
    /// dA, then dZ in place, for the hidden layers.
    grads: Vec<Aligned>,
    masks: Masks,
    first: first_layer::Scratch,
    /// Each block's share of the gradients of the layers after the first
    /// (a backward pass over many rows; grown on first use).
    partials: Vec<f32>,
}

impl Workspace {
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A network of a given layout, run on `threads` threads.
#[derive(Clone, Debug)]
pub struct Network {
    pub layout: Layout,
    pub threads: usize,
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
            capacity,
            acts: layers.iter().map(zeros).collect(),
            grads: hidden.iter().map(zeros).collect(),
            masks: Masks::new(hidden.len()),
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
        self.forward_with(params, x, ws, dropout, true)
    }

    /// [`Network::forward`]; `repack` false reuses the first layer's
    /// repacked weight from the previous call (same `params`, next chunk of
    /// rows).
    fn forward_with<'w>(
        &self,
        params: &Params,
        x: Input<'_>,
        ws: &'w mut Workspace,
        dropout: Option<&Dropout<'_>>,
        repack: bool,
    ) -> &'w mut [f32] {
        let layers = &self.layout.layers;
        let rows = x.checked_rows(self.layout.arch.inputs);
        assert!(
            rows <= ws.capacity,
            "batch of {rows} exceeds the workspace's {}",
            ws.capacity
        );
        let Workspace {
            acts, masks, first, ..
        } = ws;
        let (w1, parts) = params.first().weight(params, &x, first, repack);
        {
            let bufs = Shared {
                acts: acts.iter_mut().map(|a| Disjoint::new(a)).collect(),
                masks: masks.prepare(&layers[..layers.len() - 1], rows, dropout),
                w1,
                dropout,
            };
            if rows <= FEW_ROWS {
                self.forward_block(params, x, 0..rows, &bufs, Some(parts), self.threads);
            } else {
                for_blocks(rows, |r| self.forward_block(params, x, r, &bufs, None, 1));
            }
        }
        &mut acts[layers.len() - 1][..rows * self.layout.arch.classes]
    }

    /// Rows `r` of `x` through every layer into `bufs`, the products on
    /// `threads` threads (`parts`: see [`first_layer::FirstLayer::forward`]).
    fn forward_block(
        &self,
        params: &Params,
        x: Input<'_>,
        r: Range<usize>,
        bufs: &Shared<'_>,
        parts: Option<&mut ColumnParts>,
        threads: usize,
    ) {
        let layers = &self.layout.layers;
        // SAFETY (each `range` below): rows `r` of every buffer belong to
        // this call alone (a block of `for_blocks`, or all rows).
        let z1 = unsafe { bufs.acts[0].range(elems(&r, layers[0].outputs)) };
        let x = x.slice(r.clone(), self.layout.arch.inputs);
        // Z1 = X·W1ᵀ; A1 = act(Z1 + b1)·s1
        params.first().forward(z1, x, bufs.w1, parts, threads);
        self.activate(0, z1, &r, params, bufs);
        for (l, layer) in layers.iter().enumerate().skip(1) {
            let a = unsafe { bufs.acts[l - 1].range(elems(&r, layer.inputs)) };
            let z = unsafe { bufs.acts[l].range(elems(&r, layer.outputs)) };
            // Z = A·Wᵀ; A = act(Z + b)·s (the last layer's Z + b: the logits)
            dense::forward(
                z,
                a,
                &params[layer.w.clone()],
                dims(layer, r.len()),
                threads,
            );
            self.activate(l, z, &r, params, bufs);
        }
    }

    /// Layer `l`'s bias, activation and dropout, in place on its rows `r`.
    fn activate(
        &self,
        l: usize,
        z: &mut [f32],
        r: &Range<usize>,
        params: &Params,
        bufs: &Shared<'_>,
    ) {
        let layer = &self.layout.layers[l];
        let mask = match bufs.masks.get(l) {
            // SAFETY: rows `r` belong to this block (see `forward_block`).
            Some(slot) => unsafe { slot.rows(l, layer, r, bufs.dropout) },
            None => super::dropout::MaskRows::Off,
        };
        let bias = &params[layer.b.clone()];
        activation::forward_rows(z, layer.outputs, bias, &layer.branches, mask);
    }

    /// Forward with `dropout`, the mean cross-entropy of `labels`, and the
    /// backward pass writing every parameter's gradient into `grads` (in
    /// the storage order of `params`). Returns the mean cross-entropy (no
    /// L2 term).
    pub fn loss_and_grads(
        &self,
        params: &Params,
        grads: &mut [f32],
        x: Input<'_>,
        labels: &[u8],
        ws: &mut Workspace,
        dropout: Option<&Dropout<'_>>,
    ) -> f64 {
        let rows = labels.len();
        assert_eq!(
            x.rows(self.layout.arch.inputs),
            rows,
            "one label per input row"
        );
        let classes = self.layout.arch.classes;
        let logits = self.forward(params, x, ws, dropout);
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
        x: Input<'_>,
        rows: usize,
        ws: &mut Workspace,
        keeps: &[f32],
    ) {
        let layers = &self.layout.layers;
        let Workspace {
            acts,
            grads: dacts,
            masks,
            partials,
            ..
        } = ws;
        let saved = Saved { acts, masks, keeps };
        // The layers after the first, last to first: few rows in one block,
        // many a block at a time, each into its own partial sums, added in
        // block order (so the thread count does not matter).
        let later = &mut grads[layers[1].w.start..];
        {
            let d: Vec<Disjoint> = dacts.iter_mut().map(|g| Disjoint::new(g)).collect();
            if rows <= FEW_ROWS {
                self.backward_block(params, &saved, &d, 0..rows, later, self.threads);
            } else {
                let per_block = later.len();
                partials.resize(rows.div_ceil(BLOCK_ROWS) * per_block, 0.0);
                partials
                    .par_chunks_mut(per_block)
                    .enumerate()
                    .for_each(|(b, part)| {
                        self.backward_block(params, &saved, &d, block(rows, b), part, 1)
                    });
                sum_blocks(later, partials);
            }
        }
        // dW1 = dZ1ᵀ·X, db1 = Σ dZ1 (no gradient of the input).
        let first = &layers[0];
        let dz1 = &dacts[0][..rows * first.outputs];
        let dwdb = &mut grads[first.w.start..first.b.end];
        params.first().weight_grad(dwdb, dz1, x, self.threads);
    }

    /// Rows `r` back through every layer after the first: its weight and
    /// bias gradients into `dwdb` (the gradient buffer from the second
    /// layer's weight on), its input gradient, and from that the layer
    /// below's dZ, in place.
    fn backward_block(
        &self,
        params: &Params,
        saved: &Saved<'_>,
        dacts: &[Disjoint<'_>],
        r: Range<usize>,
        dwdb: &mut [f32],
        threads: usize,
    ) {
        let layers = &self.layout.layers;
        let (last, base) = (layers.len() - 1, layers[1].w.start);
        for l in (1..=last).rev() {
            let layer = &layers[l];
            // SAFETY (each `range`): rows `r` of the gradients belong to
            // this call alone (a block of rows, or all of them).
            let dz: &[f32] = match l == last {
                true => &saved.acts[last][elems(&r, layer.outputs)],
                false => unsafe { dacts[l].range(elems(&r, layer.outputs)) },
            };
            let da = unsafe { dacts[l - 1].range(elems(&r, layer.inputs)) };
            let a = &saved.acts[l - 1][elems(&r, layer.inputs)];
            let (dw, db) =
                dwdb[layer.w.start - base..layer.b.end - base].split_at_mut(layer.w.len());
            // dW = dZᵀ·A, db = Σ dZ, dA = dZ·W
            let w = &params[layer.w.clone()];
            dense::backward(
                Some(&mut *da),
                dw,
                db,
                dz,
                a,
                w,
                dims(layer, r.len()),
                threads,
            );
            // dZ below = dA ∘ act'·s
            let below = &layers[l - 1];
            activation::backward_rows(
                da,
                &saved.acts[l - 1][elems(&r, below.outputs)],
                below.outputs,
                &below.branches,
                saved.keeps,
                saved.masks.rows(l - 1, below.outputs, &r),
            );
        }
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
        let inputs = self.layout.arch.inputs;
        let n = images.rows(inputs);
        // Paired rows are cut between pairs.
        let most = match images {
            Input::Paired { .. } => ws.capacity & !1,
            _ => ws.capacity,
        };
        assert!(most > 0 || n == 0, "a workspace for no rows");
        let mut first = 0;
        while first < n {
            let rows = most.min(n - first);
            let x = images.slice(first..first + rows, inputs);
            let logits = self.forward_with(params, x, ws, None, first == 0);
            f(first, logits);
            first += rows;
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

/// What the backward pass reads of the forward pass.
struct Saved<'a> {
    acts: &'a [Aligned],
    masks: &'a Masks,
    keeps: &'a [f32],
}

/// The workspace's buffers during a forward pass, shared by tasks that
/// each own a block of rows, and the first layer's weight as the input
/// reads it.
struct Shared<'a> {
    acts: Vec<Disjoint<'a>>,
    masks: Vec<MaskSlot<'a>>,
    w1: Weight<'a>,
    dropout: Option<&'a Dropout<'a>>,
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
