//! Architecture: hidden stages, each a parallel block of dense branches whose
//! outputs are concatenated, then a softmax output layer.
//!
//! Written as a short spec: stages separated by `,`, branches by `|`, each
//! branch `activation:width`. The notebook's network is
//! `relu:128|tanh:64,relu:48` (784 inputs and 10 classes come from the data).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The notebook's architecture.
pub const NOTEBOOK_ARCH: &str = "relu:128|tanh:64,relu:48";

/// A hidden unit's non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Tanh,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
        }
    }
}

/// One dense branch of a hidden stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Branch {
    pub act: Activation,
    pub width: usize,
}

/// A whole network's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arch {
    pub inputs: usize,
    pub hidden: Vec<Vec<Branch>>,
    pub classes: usize,
}

impl Arch {
    /// Parses a hidden-layer spec such as `relu:128|tanh:64,relu:48`.
    pub fn parse(spec: &str, inputs: usize, classes: usize) -> Result<Arch> {
        let mut hidden = Vec::new();
        for stage in spec.split(',').map(str::trim) {
            if stage.is_empty() {
                bail!("an empty stage in `{spec}` (expected e.g. `{NOTEBOOK_ARCH}`)");
            }
            let branches = stage
                .split('|')
                .map(|b| parse_branch(b.trim()))
                .collect::<Result<Vec<_>>>()?;
            hidden.push(branches);
        }
        Ok(Arch {
            inputs,
            hidden,
            classes,
        })
    }

    /// The spec string that [`Arch::parse`] reads back.
    pub fn spec(&self) -> String {
        self.hidden
            .iter()
            .map(|s| {
                s.iter()
                    .map(|b| format!("{}:{}", b.act.name(), b.width))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Width of stage `s`'s concatenated output.
    pub fn stage_width(&self, s: usize) -> usize {
        self.hidden[s].iter().map(|b| b.width).sum()
    }

    /// Number of hidden branches (each has its own dropout keep probability).
    pub fn hidden_branches(&self) -> usize {
        self.hidden.iter().map(Vec::len).sum()
    }

    /// Number of weight matrices (each has its own L2 factor).
    pub fn weight_matrices(&self) -> usize {
        self.hidden_branches() + 1
    }
}

fn parse_branch(s: &str) -> Result<Branch> {
    let (act, width) = s
        .split_once(':')
        .with_context(|| format!("branch `{s}` should be activation:width, e.g. relu:128"))?;
    let act = match act.trim() {
        "relu" => Activation::Relu,
        "tanh" => Activation::Tanh,
        other => bail!("unknown activation `{other}` (expected relu or tanh)"),
    };
    let width: usize = width
        .trim()
        .parse()
        .with_context(|| format!("branch `{s}`: width must be a positive integer"))?;
    if width == 0 || width > 1 << 16 {
        bail!("branch `{s}`: width must be between 1 and 65536");
    }
    Ok(Branch { act, width })
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> ", self.inputs)?;
        for stage in &self.hidden {
            let parts: Vec<String> = stage
                .iter()
                .map(|b| format!("{} {}", b.act.name(), b.width))
                .collect();
            if parts.len() > 1 {
                write!(f, "[{}] -> ", parts.join(" | "))?;
            } else {
                write!(f, "{} -> ", parts[0])?;
            }
        }
        write!(f, "softmax {}", self.classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_notebook_spec_and_prints_it_back() {
        let a = Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap();
        assert_eq!(a.hidden.len(), 2);
        assert_eq!(
            a.hidden[0],
            vec![
                Branch {
                    act: Activation::Relu,
                    width: 128
                },
                Branch {
                    act: Activation::Tanh,
                    width: 64
                }
            ]
        );
        assert_eq!(a.stage_width(0), 192);
        assert_eq!(a.spec(), NOTEBOOK_ARCH);
        assert_eq!(
            a.to_string(),
            "784 -> [relu 128 | tanh 64] -> relu 48 -> softmax 10"
        );
        assert_eq!(a.weight_matrices(), 4);
    }

    #[test]
    fn rejects_bad_specs_with_the_reason() {
        for (spec, why) in [
            ("relu:0", "width"),
            ("sigmoid:3", "unknown activation"),
            ("relu128", "activation:width"),
            ("relu:4,,tanh:3", "empty stage"),
        ] {
            let e = format!("{:#}", Arch::parse(spec, 784, 10).unwrap_err());
            assert!(e.contains(why), "{spec}: {e}");
        }
    }
}
