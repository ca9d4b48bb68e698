//! The CUDA backend: the GPU engine of [`crate::gpu`], with the splits
//! uploaded once and each minibatch gathered (and shifted) on the device.

use super::{Backend, Setup, SplitName, Step, StepReport};
use crate::data::batch::Batcher;
use crate::gpu::{open, GpuNet, GpuSplit, GpuStep};
use crate::nn::dropout::Draws;
use crate::nn::{DropoutMode, Score};
use crate::optim::Optimizer;
use anyhow::{bail, Result};

pub struct Cuda {
    net: GpuNet,
    train: GpuSplit,
    val: GpuSplit,
    test: GpuSplit,
    /// The gathered minibatch.
    batch: GpuSplit,
    batcher: Batcher,
    shifts: Vec<(isize, isize)>,
    shape: (usize, usize),
    keeps: Vec<f32>,
    dropout: DropoutMode,
}

impl Cuda {
    pub fn new(setup: Setup<'_>) -> Result<Cuda> {
        if setup.batcher.distorts() {
            anyhow::bail!("--device cuda gathers shifted batches only; distortions (--rotate, --scale, --shear, --elastic) run on the CPU");
        }
        if setup.precision != crate::nn::Precision::F32 {
            anyhow::bail!("--device cuda computes in float32; --precision bf16 runs on the CPU's matrix units");
        }
        let ctx = open()?;
        let rows = setup.batcher.max_rows();
        let net = GpuNet::new(
            &ctx,
            &setup.layout,
            &setup.params,
            &setup.optimizer,
            &setup.keeps,
            rows,
        )?;
        let d = setup.data;
        Ok(Cuda {
            train: net.upload(&d.train)?,
            val: net.upload(&d.val)?,
            test: net.upload(&d.test)?,
            batch: net.batch_buffer(rows)?,
            net,
            batcher: setup.batcher,
            shifts: Vec::new(),
            shape: d.shape,
            keeps: setup.keeps,
            dropout: setup.dropout,
        })
    }
}

impl Backend for Cuda {
    /// The loss is read back, and the parameters checked, only where the
    /// loop asks for the loss: either waits for the GPU.
    fn step(&mut self, s: &Step<'_>) -> Result<StepReport> {
        let key = match s.dropout {
            Draws::Key(key) => key,
            Draws::Given(_) => {
                bail!("--device cuda draws its own dropout masks: given masks replay on the CPU")
            }
        };
        let dropout = self
            .keeps
            .iter()
            .any(|&k| k < 1.0)
            .then_some((self.dropout, key));
        let n = self.train.rows();
        let (batch, rows) = if self.batcher.is_whole_split() {
            (GpuStep::Whole(&self.train), n)
        } else {
            let ids = self.batcher.plan(s.index, &mut self.shifts);
            let rows = ids.len();
            let gather = GpuStep::Rows {
                split: &self.train,
                ids,
                shifts: &self.shifts,
                shape: self.shape,
                into: &mut self.batch,
            };
            (gather, rows)
        };
        let loss = self.net.step(batch, s.lr, s.l2, n, dropout, s.wants_loss)?;
        let finite = match s.wants_loss {
            true => Some(self.net.non_finite()? == 0),
            false => None,
        };
        Ok(StepReport {
            loss,
            finite,
            rows,
            non_finite_at: None,
        })
    }

    fn accuracy(&mut self, split: SplitName) -> Result<f64> {
        let split = match split {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        };
        self.net.accuracy(split)
    }

    fn score(&mut self, split: SplitName) -> Result<Score> {
        let split = match split {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        };
        self.net.score(split)
    }

    fn params(&self) -> Result<Vec<f32>> {
        self.net.params()
    }

    fn optimizer(&self) -> Result<Optimizer> {
        self.net.optimizer()
    }

    fn wait(&self) -> Result<()> {
        self.net.synchronize()
    }
}
