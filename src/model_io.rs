//! Model files: safetensors with the notebook's tensor names and shapes
//! (W11 `[128, 784]`, b11 `[128, 1]`, ...), and the architecture,
//! configuration and results in the metadata.

use crate::fsutil::write_atomic;
use crate::nn::{Arch, Layout};
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Metadata keys.
pub const ARCH_KEY: &str = "scratchnet.arch";
pub const INPUTS_KEY: &str = "scratchnet.inputs";
pub const CLASSES_KEY: &str = "scratchnet.classes";
pub const VERSION_KEY: &str = "scratchnet.version";

/// A network's parameters with what describes them.
#[derive(Clone, Debug)]
pub struct Model {
    pub layout: Layout,
    /// Every weight as `out x in` rows, as the file holds them.
    pub params: Vec<f32>,
    /// Free-form metadata (configuration, metrics, data checksums...).
    pub metadata: BTreeMap<String, String>,
    /// Further 1-D tensors, named `state.*` (a checkpoint's optimiser state,
    /// shaped like the parameters: weights in rows).
    pub extra: BTreeMap<String, Vec<f32>>,
}

/// Prefix of the names of [`Model::extra`] tensors.
pub const STATE_PREFIX: &str = "state.";

impl Model {
    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let le = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let params = &self.params;
        let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .layout
            .tensors()
            .map(|t| {
                (
                    t.name.clone(),
                    t.shape.to_vec(),
                    le(&params[t.range.clone()]),
                )
            })
            .collect();
        for (name, v) in &self.extra {
            assert!(
                name.starts_with(STATE_PREFIX),
                "extra tensor `{name}` lacks `{STATE_PREFIX}`"
            );
            bytes.push((name.clone(), vec![v.len()], le(v)));
        }
        let views = bytes
            .iter()
            .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        let arch = &self.layout.arch;
        meta.insert(ARCH_KEY.into(), arch.spec());
        meta.insert(INPUTS_KEY.into(), arch.inputs.to_string());
        meta.insert(CLASSES_KEY.into(), arch.classes.to_string());
        meta.insert(VERSION_KEY.into(), env!("CARGO_PKG_VERSION").into());
        Ok(safetensors::serialize(views, Some(meta))?)
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// Reads a model saved by [`Model::save`].
    pub fn load(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read model file", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
    }

    /// Parses safetensors bytes written by [`Model::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| not_a_model(bytes, e))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let get = |k: &str| {
            metadata
                .get(k)
                .with_context(|| format!("not a scratchnet model: metadata has no `{k}`"))
        };
        let parse_n = |k: &str| -> Result<usize> {
            get(k)?
                .parse()
                .with_context(|| format!("metadata `{k}` is not a number"))
        };
        let arch = Arch::parse(get(ARCH_KEY)?, parse_n(INPUTS_KEY)?, parse_n(CLASSES_KEY)?)?;
        if arch.inputs == 0 || arch.inputs > 1 << 24 || arch.classes < 2 || arch.classes > 1 << 16 {
            bail!(
                "implausible model shape: {} inputs, {} classes",
                arch.inputs,
                arch.classes
            );
        }
        let layout = Layout::new(&arch);
        let params = read_tensors(bytes, &layout)?;
        let st = SafeTensors::deserialize(bytes).context("not a valid safetensors file")?;
        let mut extra = BTreeMap::new();
        for (name, view) in st.tensors() {
            if !name.starts_with(STATE_PREFIX) {
                continue;
            }
            if view.dtype() != Dtype::F32 || view.shape().len() != 1 {
                bail!("state tensor `{name}` is not a 1-D F32 tensor");
            }
            let v = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            extra.insert(name, v);
        }
        Ok(Model {
            layout,
            params,
            metadata,
            extra,
        })
    }
}

/// The error for `bytes` that are no safetensors file: what they seem to be
/// instead, when that can be told from their first bytes.
fn not_a_model(bytes: &[u8], e: safetensors::SafeTensorError) -> anyhow::Error {
    let head = &bytes[..bytes.len().min(512)];
    let text = std::str::from_utf8(head)
        .is_ok_and(|s| !s.chars().any(|c| c.is_control() && !c.is_whitespace()));
    let what = match bytes {
        [] => "the file is empty".to_string(),
        // ModelProto: ir_version (field 1), then producer_name (field 2).
        [0x08, _, 0x12, ..] => {
            "it is an ONNX file, which `scratchnet export` writes from a model".to_string()
        }
        [0x1f, 0x8b, ..] => "it is gzip-compressed data".to_string(),
        [b'P', b'K', 3, 4, ..] => "it is a zip archive (a PyTorch .pt file?)".to_string(),
        [0x89, b'P', b'N', b'G', ..] | [0xff, 0xd8, 0xff, ..] => {
            "it is an image (`scratchnet predict MODEL IMAGE` reads images)".to_string()
        }
        _ if text => "it is a text file".to_string(),
        _ => format!("its header does not read as safetensors ({e})"),
    };
    anyhow::anyhow!(
        "not a scratchnet model: {what}; expected a .safetensors model saved by scratchnet \
         (`train --save`, or `model.save` in Python)"
    )
}

/// Reads every tensor of `layout` by name from safetensors `bytes` into a flat
/// buffer, every weight in rows as the file holds it, checking dtype and
/// shape (also used by `--init` with files from other tools).
pub fn read_tensors(bytes: &[u8], layout: &Layout) -> Result<Vec<f32>> {
    let st = SafeTensors::deserialize(bytes).context("not a valid safetensors file")?;
    let mut params = vec![0.0f32; layout.len];
    for t in layout.tensors() {
        let view = st
            .tensor(&t.name)
            .with_context(|| format!("missing tensor `{}` (expected {:?})", t.name, t.shape))?;
        let shape = view.shape();
        let want = t.shape;
        // A bias may also be stored as a plain vector.
        let ok = shape == want || (want[1] == 1 && shape == [want[0]]);
        if !ok {
            bail!("tensor `{}` has shape {shape:?}, expected {want:?}", t.name);
        }
        let dst = &mut params[t.range.clone()];
        match view.dtype() {
            Dtype::F32 => dst
                .iter_mut()
                .zip(view.data().chunks_exact(4))
                .for_each(|(d, b)| *d = f32::from_le_bytes(b.try_into().unwrap())),
            Dtype::F64 => dst
                .iter_mut()
                .zip(view.data().chunks_exact(8))
                .for_each(|(d, b)| *d = f64::from_le_bytes(b.try_into().unwrap()) as f32),
            other => bail!(
                "tensor `{}` has dtype {other:?}, expected F32 or F64",
                t.name
            ),
        }
        if let Some(i) = dst.iter().position(|v| !v.is_finite()) {
            bail!("tensor `{}` holds a non-finite value at index {i}", t.name);
        }
    }
    Ok(params)
}

/// Loads initial weights for `layout` from a safetensors file (`--init`).
pub fn load_init(path: &Path, layout: &Layout) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read --init file", path.display()))?;
    read_tensors(&bytes, layout).with_context(|| format!("--init {}", path.display()))
}
