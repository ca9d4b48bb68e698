//! One image at a time through a trained network, on the calling thread:
//! what a prediction service does per request (the batch paths split their
//! work among a thread pool, which a request's few microseconds do not
//! repay). The image takes the form the batch paths would give it
//! (compressed when sparse), so the answer is theirs, bit for bit.

use crate::data::image_prep::{check_ink, digit_from_bytes};
use crate::model_io::Model;
use crate::nn::network::argmax;
use crate::nn::softmax_ce::softmax_row;
use crate::nn::{Arithmetic, Images, InputKind, Network, Params, Role};
use anyhow::{bail, Result};

/// A model ready to classify single images.
pub struct Classifier {
    net: Network,
    /// The parameters stored for compressed input, and for dense.
    sparse: Params,
    dense: Params,
}

/// What the network made of one image.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Answer {
    pub digit: u8,
    pub probabilities: Vec<f32>,
    /// The 28x28 input the network saw, row by row, 0..1.
    pub prepared: Vec<f32>,
}

impl Classifier {
    pub fn new(model: &Model) -> Classifier {
        let params = |kind| Params::from_rows(&model.layout, &model.params, kind);
        Classifier {
            sparse: params(InputKind::Sparse),
            dense: params(InputKind::Dense),
            net: Network::new(model.layout.clone(), 1),
        }
    }

    /// Pixels a network input takes.
    pub fn inputs(&self) -> usize {
        self.net.layout.arch.inputs
    }

    /// Classifies `pixels` (`inputs` values in 0..1, as MNIST's byte / 256);
    /// errors say what was wrong with them.
    pub fn classify(&self, pixels: Vec<f32>) -> Result<Answer> {
        let n = self.inputs();
        if pixels.len() != n {
            bail!("expected {n} pixels, got {}", pixels.len());
        }
        if let Some(i) = pixels.iter().position(|v| !(0.0..=1.0).contains(v)) {
            bail!("pixel {i} is {}: pixels must lie in 0..1", pixels[i]);
        }
        // Blank pixels are refused as a blank picture is.
        check_ink(pixels.iter().copied().fold(0.0, f32::max))?;
        let mut ws = self.net.workspace(1);
        // One image: packing the weight for a matrix unit would cost more
        // than the unit saves.
        let x = Images::new(pixels[..].into(), &[], n, Role::Infer, Arithmetic::F32);
        let params = match x.kind() {
            InputKind::Sparse => &self.sparse,
            InputKind::Dense => &self.dense,
        };
        let logits = self.net.forward(params, x.input(), &mut ws, None);
        softmax_row(logits);
        Ok(Answer {
            digit: argmax(logits),
            probabilities: logits.to_vec(),
            prepared: pixels,
        })
    }

    /// Classifies an encoded image (PNG, JPEG, BMP, PGM), prepared as
    /// `scratchnet predict` prepares a file.
    pub fn classify_image(&self, bytes: &[u8]) -> Result<Answer> {
        self.classify(digit_from_bytes(bytes)?)
    }
}
