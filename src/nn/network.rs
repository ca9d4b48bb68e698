//! The whole network: forward through every layer, the loss, and backward,
//! over preallocated buffers (per pass, only a short list of buffer handles
//! is allocated). Many rows go a block at a time through every layer, a few
//! (a minibatch) layer by layer with each product split among the threads.

use super::activation::{self, MaskRows};
use super::dense::{self, Dims};
use super::dropout::{fill_mask, mix64, DropoutMode};
use super::params::{LayerLayout, Layout};
use super::softmax_ce;
use crate::tensor::par::{block, for_blocks, for_row_blocks, sum_blocks, Disjoint, BLOCK_ROWS};
use crate::tensor::{
    on_a_line, spmm, spmm_by_columns, spmm_paired, unpack_transposed, Aligned, ColumnBlocks,
    ColumnParts, PairView, PanelView, Panels, SparseRows, SparseView, COLUMN_SPLIT_ROWS,
};
use rayon::prelude::*;
use std::ops::Range;

/// A batch of network inputs, `[rows, inputs]`.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Dense(&'a [f32]),
    /// Mostly-zero rows, compressed (see [`crate::tensor::sparse`]); a
    /// backward pass also needs them grouped by column, `by_column`.
    Sparse {
        rows: SparseView<'a>,
        by_column: Option<&'a ColumnBlocks>,
    },
    /// Mostly-zero rows merged in pairs of similar rows (see
    /// [`crate::tensor::pairs`]), in the pairs' row order, and the same by
    /// column for a backward pass.
    Paired {
        rows: PairView<'a>,
        by_column: Option<&'a ColumnBlocks>,
    },
}

impl<'a> Input<'a> {
    /// `dense`, or its compressed form when there is one (forward only).
    pub fn new(dense: &'a [f32], compressed: Option<&'a SparseRows>) -> Input<'a> {
        match compressed {
            Some(c) => Input::Sparse {
                rows: c.view(),
                by_column: None,
            },
            None => Input::Dense(dense),
        }
    }

    /// Rows `range`, for `inputs`-wide rows (forward only).
    pub fn slice(&self, range: Range<usize>, inputs: usize) -> Input<'a> {
        match *self {
            Input::Dense(x) => Input::Dense(&x[range.start * inputs..range.end * inputs]),
            Input::Sparse { rows, .. } => Input::Sparse {
                rows: rows.slice(range),
                by_column: None,
            },
            Input::Paired { rows, .. } => Input::Paired {
                rows: rows.slice(range),
                by_column: None,
            },
        }
    }

    /// Number of rows, for `inputs`-wide rows.
    pub fn rows(&self, inputs: usize) -> usize {
        match self {
            Input::Dense(x) => x.len() / inputs.max(1),
            Input::Sparse { rows, .. } => rows.rows(),
            Input::Paired { rows, .. } => rows.rows(),
        }
    }
}

/// Dropout for one training step.
#[derive(Clone, Copy, Debug)]
pub struct Dropout<'a> {
    pub mode: DropoutMode,
    /// Keep probability of each hidden branch, in order.
    pub keeps: &'a [f32],
    /// Stream key of this step's masks (see [`super::dropout::stream_key`]).
    pub key: u64,
}

/// Activations, their gradients and dropout masks for up to `capacity` rows.
#[derive(Debug)]
pub struct Workspace {
    capacity: usize,
    /// Layer outputs `[rows, outputs]`; the last holds logits, then dZ.
    /// Aligned, as are `grads`: the sparse weight gradient reads `dZ1` by
    /// 16-float rows.
    acts: Vec<Aligned>,
    /// dA, then dZ in place, for the hidden layers.
    grads: Vec<Aligned>,
    /// Dropout scales per hidden layer (one row in unit mode, `rows` otherwise;
    /// grown on the first step, then reused).
    masks: Vec<Vec<f32>>,
    /// Which layers' masks the last forward pass used.
    mask_mode: Option<DropoutMode>,
    masked: Vec<bool>,
    /// The first layer's weight in panels for compressed input, where the
    /// layout keeps it in rows or off a cache line (packed or copied once
    /// per forward pass, or per
    /// `logits_chunks` call: its first chunk is its largest, so later chunks
    /// never need a packing the first skipped).
    w_panels: Panels,
    /// The first layer's weight in rows, where the layout keeps it in
    /// panels and the input is dense (the dense product's operand).
    w_rows: Vec<f32>,
    /// The threads' columns of a minibatch's first product.
    w_parts: ColumnParts,
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
        let hidden = layers.len() - 1;
        Workspace {
            capacity,
            acts: layers
                .iter()
                .map(|l| Aligned::zeros(capacity * l.outputs))
                .collect(),
            grads: layers[..hidden]
                .iter()
                .map(|l| Aligned::zeros(capacity * l.outputs))
                .collect(),
            // Sized on first use: one row in unit mode, a row per sample otherwise.
            masks: vec![Vec::new(); hidden],
            mask_mode: None,
            masked: vec![false; hidden],
            w_panels: Panels::default(),
            w_rows: Vec::new(),
            w_parts: ColumnParts::default(),
            partials: Vec::new(),
        }
    }

    /// Forward pass over the rows of `x`; returns the logits
    /// `[rows, classes]`. With `dropout`, hidden outputs are masked.
    pub fn forward<'w>(
        &self,
        params: &[f32],
        x: Input<'_>,
        ws: &'w mut Workspace,
        dropout: Option<&Dropout<'_>>,
    ) -> &'w mut [f32] {
        self.forward_with(params, x, ws, dropout, true)
    }

    /// [`Network::forward`]; `repack` false reuses the first layer's packed
    /// weight from the previous call (same `params`, next chunk of rows).
    fn forward_with<'w>(
        &self,
        params: &[f32],
        x: Input<'_>,
        ws: &'w mut Workspace,
        dropout: Option<&Dropout<'_>>,
        repack: bool,
    ) -> &'w mut [f32] {
        let inputs = self.layout.arch.inputs;
        let rows = x.rows(inputs);
        assert!(
            rows <= ws.capacity,
            "batch of {rows} exceeds the workspace's {}",
            ws.capacity
        );
        match x {
            Input::Dense(x) => assert_eq!(x.len(), rows * inputs, "input is not rows x inputs"),
            Input::Sparse { rows, .. } => {
                assert_eq!(rows.cols(), inputs, "input is not inputs wide")
            }
            Input::Paired { rows, .. } => {
                assert_eq!(rows.cols(), inputs, "input is not inputs wide")
            }
        }
        let layers = &self.layout.layers;
        self.prepare_masks(ws, rows, dropout);
        let Workspace {
            acts,
            masks,
            masked,
            w_panels,
            w_rows,
            w_parts,
            ..
        } = ws;
        // The first layer's weight as the input's product reads it: in
        // panels for compressed rows (read in place where the layout keeps
        // them and they start on a cache line, as a trainer's do; a load
        // across two lines costs two), in rows for dense ones.
        let first = &layers[0];
        let w0 = &params[first.w.clone()];
        let (dense, kept) = (matches!(x, Input::Dense(_)), self.layout.w0_panels);
        let in_place = kept && on_a_line(w0);
        if repack && dense && kept {
            w_rows.resize(w0.len(), 0.0);
            unpack_transposed(w_rows, w0, first.inputs, first.outputs);
        } else if repack && !dense && kept && !in_place {
            w_panels.copy_from(PanelView::new(w0, first.inputs, first.outputs));
        } else if repack && !dense && !kept {
            w_panels.pack_transposed(w0, first.inputs, first.outputs);
        }
        let w0_rows = if kept { &w_rows[..] } else { w0 };
        let w0_panels = match in_place {
            true => PanelView::new(w0, first.inputs, first.outputs),
            false => w_panels.view(),
        };
        {
            let bufs = Shared {
                acts: acts.iter_mut().map(|a| Disjoint::new(a)).collect(),
                masks: masks
                    .iter_mut()
                    .zip(masked.iter())
                    .map(|(m, &on)| match dropout {
                        Some(d) if on && d.mode == DropoutMode::Unit => Mask::Unit(m),
                        Some(_) if on => Mask::Sample(Disjoint::new(m)),
                        _ => Mask::Off,
                    })
                    .collect(),
                w0_rows,
                w0_panels,
            };
            if rows <= COLUMN_SPLIT_ROWS {
                // Few rows: each layer's product is split among the threads
                // (a minibatch's compressed rows by the weight's columns).
                let parts = matches!(x, Input::Sparse { .. }).then_some(w_parts);
                self.forward_block(params, x, 0..rows, &bufs, dropout, parts, self.threads);
            } else {
                // Many rows: a block of rows goes through every layer on one
                // thread, its activations still in cache from the layer below.
                for_blocks(rows, |r| {
                    self.forward_block(params, x, r, &bufs, dropout, None, 1)
                });
            }
        }
        &mut acts[layers.len() - 1][..rows * self.layout.arch.classes]
    }

    /// Marks the hidden layers that dropout masks this pass and sizes their
    /// masks; a mask shared by all rows (unit mode) is drawn here, one per
    /// row (sample mode) with its block's forward pass.
    fn prepare_masks(&self, ws: &mut Workspace, rows: usize, dropout: Option<&Dropout<'_>>) {
        let layers = &self.layout.layers;
        ws.mask_mode = dropout.map(|d| d.mode);
        for (l, layer) in layers[..layers.len() - 1].iter().enumerate() {
            ws.masked[l] =
                dropout.is_some_and(|d| layer.branches.iter().any(|b| d.keeps[b.index] < 1.0));
            let Some(d) = dropout.filter(|_| ws.masked[l]) else {
                continue;
            };
            let mask_rows = if d.mode == DropoutMode::Unit { 1 } else { rows };
            let mask = &mut ws.masks[l];
            if mask.len() < mask_rows * layer.outputs {
                mask.resize(mask_rows * layer.outputs, 0.0);
            }
            if d.mode == DropoutMode::Unit {
                fill_masks(&mut mask[..layer.outputs], 0, l, layer, d);
            }
        }
    }

    /// Rows `r` of `x` through every layer into `bufs`, the products on
    /// `threads` threads (`parts`: split by columns, for a minibatch).
    #[allow(clippy::too_many_arguments)]
    fn forward_block(
        &self,
        params: &[f32],
        x: Input<'_>,
        r: Range<usize>,
        bufs: &Shared<'_>,
        dropout: Option<&Dropout<'_>>,
        mut parts: Option<&mut ColumnParts>,
        threads: usize,
    ) {
        let layers = &self.layout.layers;
        for (l, layer) in layers.iter().enumerate() {
            let rows_of = |width| elems(&r, width);
            // SAFETY: rows `r` of every buffer belong to this call alone
            // (blocks of `for_blocks`, or all rows on the calling thread).
            let out = unsafe { bufs.acts[l].range(rows_of(layer.outputs)) };
            let w = if l == 0 {
                bufs.w0_rows
            } else {
                &params[layer.w.clone()]
            };
            let d = Dims {
                batch: r.len(),
                inputs: layer.inputs,
                outputs: layer.outputs,
            };
            match (l, x.slice(r.clone(), self.layout.arch.inputs)) {
                (0, Input::Sparse { rows, .. }) => match parts.as_deref_mut() {
                    Some(parts) => spmm_by_columns(out, rows, bufs.w0_panels, parts),
                    None => spmm(out, rows, bufs.w0_panels, false),
                },
                (0, Input::Paired { rows, .. }) => spmm_paired(out, rows, bufs.w0_panels),
                (0, Input::Dense(x)) => dense::forward(out, x, w, d, threads),
                _ => {
                    // SAFETY: as `out`, in the layer below.
                    let below = unsafe { bufs.acts[l - 1].range(rows_of(layer.inputs)) };
                    dense::forward(out, below, w, d, threads)
                }
            }
            let mask = match bufs.masks.get(l) {
                Some(Mask::Unit(m)) => MaskRows::Unit(&m[..layer.outputs]),
                Some(Mask::Sample(m)) => {
                    // SAFETY: as `out`.
                    let m = unsafe { m.range(rows_of(layer.outputs)) };
                    fill_masks(
                        m,
                        r.start,
                        l,
                        layer,
                        dropout.expect("masks come with dropout"),
                    );
                    MaskRows::Sample(m)
                }
                _ => MaskRows::Off,
            };
            let bias = &params[layer.b.clone()];
            activation::forward_rows(out, layer.outputs, bias, &layer.branches, mask);
        }
    }

    /// Forward with `dropout`, the mean cross-entropy of `labels`, and the
    /// backward pass writing every parameter's gradient into `grads` (the flat
    /// layout of `params`). Returns the mean cross-entropy (no L2 term).
    pub fn loss_and_grads(
        &self,
        params: &[f32],
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
        let loss = softmax_ce::loss_and_grad(logits, labels, classes, 1.0 / rows as f32);
        self.backward(
            params,
            grads,
            x,
            rows,
            ws,
            dropout.map(|d| d.keeps).unwrap_or(&[]),
        );
        loss / rows as f64
    }

    fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: Input<'_>,
        rows: usize,
        ws: &mut Workspace,
        keeps: &[f32],
    ) {
        let layers = &self.layout.layers;
        let last = layers.len() - 1;
        let Workspace {
            acts,
            grads: dgrads,
            masks,
            masked,
            mask_mode,
            partials,
            ..
        } = ws;
        let saved = Saved {
            acts,
            masks,
            masked,
            mask_mode: *mask_mode,
            keeps,
        };
        if rows <= COLUMN_SPLIT_ROWS {
            // Few rows: layer by layer, each product split among the threads.
            for l in (0..=last).rev() {
                let layer = &layers[l];
                let (lower, upper) = dgrads.split_at_mut(l.min(last));
                let dz: &[f32] = if l == last {
                    &saved.acts[last]
                } else {
                    &upper[0]
                };
                let dinp = (l > 0).then(|| &mut lower[l - 1][..]);
                let dwdb = &mut grads[layer.w.start..layer.b.end];
                self.layer_grads(l, params, dwdb, x, dz, saved, 0..rows, dinp, self.threads);
                if l > 0 {
                    let width = layers[l - 1].outputs;
                    for_row_blocks(&mut dgrads[l - 1][..rows * width], width, |first, block| {
                        let r = first..first + block.len() / width;
                        self.activation_grad(l - 1, r, block, saved)
                    });
                }
            }
        } else {
            self.backward_blocks(params, grads, x, rows, dgrads, partials, saved);
        }
        // The dense product wrote the first layer's weight gradient in rows
        // (a trainer keeps dense data's weight in rows, so only other callers
        // get here).
        if matches!(x, Input::Dense(_)) {
            self.layout.from_row_major(grads);
        }
    }

    /// [`Network::backward`] for many rows.
    #[allow(clippy::too_many_arguments)]
    fn backward_blocks(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: Input<'_>,
        rows: usize,
        dgrads: &mut [Aligned],
        partials: &mut Vec<f32>,
        saved: Saved<'_>,
    ) {
        let layers = &self.layout.layers;
        let last = layers.len() - 1;
        // Many rows: a block of rows goes back through the dense layers on
        // one thread (what it reads and writes stays in cache), its share of
        // their weight gradients into its own partial sums, which are then
        // added in block order (so the thread count does not matter); the
        // first layer's gradient follows, over all rows.
        let base = layers[1].w.start;
        let per_block = self.layout.len - base;
        let blocks = rows.div_ceil(BLOCK_ROWS);
        if partials.len() < blocks * per_block {
            partials.resize(blocks * per_block, 0.0);
        }
        let partials = &mut partials[..blocks * per_block];
        {
            let g: Vec<Disjoint> = dgrads.iter_mut().map(|g| Disjoint::new(g)).collect();
            partials
                .par_chunks_mut(per_block)
                .enumerate()
                .for_each(|(b, part)| {
                    let r = block(rows, b);
                    for l in (1..=last).rev() {
                        let layer = &layers[l];
                        let rows_of = |width| elems(&r, width);
                        // SAFETY: rows `r` of the gradients belong to this block.
                        let dz: &[f32] = if l == last {
                            &saved.acts[last][rows_of(layer.outputs)]
                        } else {
                            unsafe { g[l].range(rows_of(layer.outputs)) }
                        };
                        let dinp = unsafe { g[l - 1].range(rows_of(layer.inputs)) };
                        let dwdb = &mut part[layer.w.start - base..layer.b.end - base];
                        self.layer_grads(
                            l,
                            params,
                            dwdb,
                            x,
                            dz,
                            saved,
                            r.clone(),
                            Some(&mut *dinp),
                            1,
                        );
                        self.activation_grad(l - 1, r.clone(), dinp, saved);
                    }
                });
        }
        sum_blocks(&mut grads[base..], partials);
        let first = &layers[0];
        let dz = &dgrads[0][..rows * first.outputs];
        let dwdb = &mut grads[first.w.start..first.b.end];
        self.layer_grads(0, params, dwdb, x, dz, saved, 0..rows, None, self.threads);
    }

    /// Layer `l`'s weight and bias gradients (`dwdb`, in the layout of its
    /// parameters) from its `dz` for rows `r`, and, when asked, its input
    /// gradient `dinp`, on `threads` threads.
    #[allow(clippy::too_many_arguments)]
    fn layer_grads(
        &self,
        l: usize,
        params: &[f32],
        dwdb: &mut [f32],
        x: Input<'_>,
        dz: &[f32],
        saved: Saved<'_>,
        r: Range<usize>,
        dinp: Option<&mut [f32]>,
        threads: usize,
    ) {
        let layer = &self.layout.layers[l];
        let (dw, db) = dwdb.split_at_mut(layer.w.len());
        let w = &params[layer.w.clone()];
        let d = Dims {
            batch: r.len(),
            inputs: layer.inputs,
            outputs: layer.outputs,
        };
        match (l, x) {
            (0, Input::Sparse { by_column, .. } | Input::Paired { by_column, .. }) => {
                let by_column = by_column.expect("a backward pass needs inputs by column");
                dense::backward_sparse(dw, db, dz, by_column, self.layout.w0_panels);
            }
            (0, Input::Dense(x)) => {
                // In rows, whatever the layout ([`Network::backward`] repacks
                // it); the weight is only read for an input gradient.
                dense::backward(None, dw, db, dz, &x[elems(&r, layer.inputs)], w, d, threads)
            }
            _ => {
                let below = &saved.acts[l - 1][elems(&r, layer.inputs)];
                dense::backward(dinp, dw, db, dz, below, w, d, threads)
            }
        }
    }

    /// Hidden layer `l`'s dA into dZ in place, for rows `r` (`block`).
    fn activation_grad(&self, l: usize, r: Range<usize>, block: &mut [f32], saved: Saved<'_>) {
        let layer = &self.layout.layers[l];
        let width = layer.outputs;
        let mask = match (saved.masked[l], saved.mask_mode) {
            (true, Some(DropoutMode::Unit)) => MaskRows::Unit(&saved.masks[l][..width]),
            (true, Some(DropoutMode::Sample)) => {
                MaskRows::Sample(&saved.masks[l][elems(&r, width)])
            }
            _ => MaskRows::Off,
        };
        activation::backward_rows(
            block,
            &saved.acts[l][elems(&r, width)],
            width,
            &layer.branches,
            saved.keeps,
            mask,
        );
    }

    /// Calls `f(first_row, logits)` for consecutive chunks of `images`,
    /// evaluated without dropout.
    pub fn logits_chunks(
        &self,
        params: &[f32],
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
    pub fn predict(&self, params: &[f32], images: Input<'_>, ws: &mut Workspace) -> Vec<u8> {
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
        params: &[f32],
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
#[derive(Clone, Copy)]
struct Saved<'a> {
    acts: &'a [Aligned],
    masks: &'a [Vec<f32>],
    masked: &'a [bool],
    mask_mode: Option<DropoutMode>,
    keeps: &'a [f32],
}

/// The workspace's buffers during a forward pass, shared by tasks that
/// each own a block of rows.
struct Shared<'a> {
    acts: Vec<Disjoint<'a>>,
    masks: Vec<Mask<'a>>,
    /// The first layer's weight in rows (dense input) and in panels
    /// (compressed input); one of them is valid.
    w0_rows: &'a [f32],
    w0_panels: PanelView<'a>,
}

/// A hidden layer's dropout scales during a forward pass.
enum Mask<'a> {
    Off,
    /// One row for every sample, drawn before the pass.
    Unit(&'a [f32]),
    /// A row per sample, drawn block by block.
    Sample(Disjoint<'a>),
}

/// Draws layer `l`'s dropout scales for `scale`'s rows, the first being
/// row `first_row` of the batch.
fn fill_masks(scale: &mut [f32], first_row: usize, l: usize, layer: &LayerLayout, d: &Dropout<'_>) {
    let key = mix64(d.key ^ l as u64);
    for b in &layer.branches {
        fill_mask(
            scale,
            first_row,
            layer.outputs,
            b.cols.clone(),
            d.keeps[b.index],
            key,
        );
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
