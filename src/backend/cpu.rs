//! The CPU backend: the network of [`crate::nn`] with the optimisers of
//! [`crate::optim`], on the splits held as the first layer reads them
//! fastest ([`splits`]).

mod splits;

use super::{Backend, Setup, SplitName, Step, StepReport};
use crate::nn::{
    l2, Arithmetic, Dropout, DropoutMode, Images, Layout, Network, Params, Precision, Role, Score,
    Workspace,
};
use crate::optim::{Decay, Optimizer};
use anyhow::Result;
use splits::Splits;

/// Rows evaluated at once.
const EVAL_ROWS: usize = 2048;

pub struct Cpu<'d> {
    net: Network,
    params: Params,
    /// Gradients, in the parameters' storage order.
    grads: Vec<f32>,
    /// Its state in the parameters' storage order.
    opt: Optimizer,
    /// This step's L2 terms, for the optimiser (reused).
    decay: Vec<Decay>,
    keeps: Vec<f32>,
    dropout: DropoutMode,
    splits: Splits<'d>,
    ws: Workspace,
    eval_ws: Workspace,
}

impl<'d> Cpu<'d> {
    pub fn new(setup: Setup<'d>, threads: usize) -> Cpu<'d> {
        let Setup {
            layout,
            data,
            params,
            mut optimizer,
            batcher,
            keeps,
            dropout,
            precision,
        } = setup;
        let rows = batcher.max_rows();
        let splits = Splits::new(data, batcher, Arithmetic::current(precision));
        let params = Params::from_rows(&layout, &params, splits.input_kind());
        optimizer.map_buffers(|b| params.from_rows_like(b));
        let net = Network::new(layout, threads);
        Cpu {
            grads: vec![0.0; params.len()],
            params,
            opt: optimizer,
            decay: Vec::new(),
            keeps,
            dropout,
            splits,
            ws: net.workspace(rows),
            eval_ws: net.workspace(EVAL_ROWS),
            net,
        }
    }
}

impl Backend for Cpu<'_> {
    fn step(&mut self, s: &Step<'_>) -> Result<StepReport> {
        let dropout = self.keeps.iter().any(|&k| k < 1.0).then(|| Dropout {
            mode: self.dropout,
            keeps: &self.keeps,
            draws: s.dropout,
        });
        let (net, params, grads, ws) = (&self.net, &self.params, &mut self.grads, &mut self.ws);
        let (loss, rows) = self.splits.with_batch(s.index, s.more, |x, labels| {
            net.loss_and_grads(params, grads, x, labels, ws, dropout.as_ref())
        });
        if !loss.is_finite() {
            return Ok(StepReport {
                loss: Some(loss),
                finite: None,
                rows,
                non_finite_at: Some(self.net.first_non_finite(&self.ws, rows)),
            });
        }
        let n = self.splits.train_len();
        l2::decay(&self.net.layout, s.l2, n, &mut self.decay);
        let finite = self.opt.step(
            self.params.in_storage_order_mut(),
            &self.grads,
            &self.decay,
            s.lr,
        );
        Ok(StepReport {
            loss: Some(loss),
            finite: Some(finite),
            rows,
            non_finite_at: None,
        })
    }

    fn accuracy(&mut self, split: SplitName) -> Result<f64> {
        let (x, labels) = self.splits.eval(split);
        Ok(self
            .net
            .accuracy(&self.params, x, labels, &mut self.eval_ws))
    }

    fn score(&mut self, split: SplitName) -> Result<Score> {
        let (x, labels) = self.splits.eval(split);
        let mut score = self.net.score(&self.params, x, labels, &mut self.eval_ws);
        score.predicted = self.splits.in_split_order(split, score.predicted);
        Ok(score)
    }

    fn params(&self) -> Result<Vec<f32>> {
        Ok(self.params.rows())
    }

    fn optimizer(&self) -> Result<Optimizer> {
        let mut opt = self.opt.clone();
        opt.map_buffers(|b| self.params.to_rows(b));
        Ok(opt)
    }
}

/// The logits of `images` under `params` (in rows), on `threads` threads,
/// in the images' order.
pub fn logits(layout: &Layout, params: &[f32], images: &[f32], threads: usize) -> Vec<f32> {
    let net = Network::new(layout.clone(), threads);
    let mut ws = net.workspace(EVAL_ROWS);
    let arith = Arithmetic::current(Precision::F32);
    let x = Images::new(images.into(), &[], layout.arch.inputs, Role::Infer, arith);
    let params = Params::from_rows(layout, params, x.kind());
    let mut out = Vec::with_capacity(images.len() / layout.arch.inputs * layout.arch.classes);
    net.logits_chunks(&params, x.input(), &mut ws, |_, z| out.extend_from_slice(z));
    out
}
