//! A trained model as an ONNX file, for other runtimes (ONNX Runtime in
//! Python or a browser, tract, candle, burn): the network as `Gemm` (with
//! `transB`), `Relu`, `Tanh`, `Concat` and `Softmax` nodes, no dropout, the
//! weights as raw little-endian float32 initializers named as the notebook
//! names them (W11, b11, ...).
//!
//! Graph input `pixels`: float32 `[N, inputs]`, the pixels scaled to 0..1 as
//! the first layer takes them, `N` free. Outputs `logits` and
//! `probabilities`: float32 `[N, classes]`.

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TensorType, TypeProto, ValueInfoProto,
    ATTRIBUTE_INT, FLOAT,
};
use crate::fsutil::write_atomic;
use crate::model_io::Model;
use crate::nn::{Activation, ParamTensor};
use anyhow::Result;
use prost::Message;
use std::path::Path;

/// The operator set the nodes are taken from (`Softmax` with `axis`
/// meaning one axis, as here, since 13).
pub const OPSET: i64 = 13;
/// The IR version of opset 13's release (ONNX 1.8): every current runtime
/// reads it.
pub const IR_VERSION: i64 = 7;

/// How an image becomes the model's input, as `scratchnet predict` does it.
pub const PREPARATION: &str = "pixels: a 28x28 grey image, row by row, ink bright on a dark \
    background, each 8-bit value divided by 256 (MNIST's scale, 0 to 1). An image of your own: \
    grey levels, inverted if the paper is light, cropped to the ink, fitted into 20x20 keeping \
    the aspect ratio, centred by centre of mass in 28x28, as `scratchnet predict` prepares it.";

/// `model` as the bytes of an ONNX file.
pub fn to_onnx(model: &Model) -> Vec<u8> {
    let layout = &model.layout;
    let arch = &layout.arch;
    let mut nodes = Vec::new();
    let mut initializer = Vec::new();
    let mut below = "pixels".to_string();
    let last = layout.layers.len() - 1;
    for (l, layer) in layout.layers.iter().enumerate() {
        let mut outputs = Vec::new();
        for slot in &layer.branches {
            let (w, b) = (&layout.weights[slot.index], &layout.biases[slot.index]);
            let name = &w.name[1..];
            initializer.push(tensor(w, &w.shape, &model.params));
            // Gemm's C broadcasts along the rows as a vector.
            initializer.push(tensor(b, &[b.shape[0]], &model.params));
            let z = if l == last {
                "logits".to_string()
            } else {
                format!("Z{name}")
            };
            nodes.push(node(
                "Gemm",
                &format!("dense{name}"),
                &[&below, &w.name, &b.name],
                &z,
                &[("transB", 1)],
            ));
            let a = match slot.act {
                None => z,
                Some(act) => {
                    let op = match act {
                        Activation::Relu => "Relu",
                        Activation::Tanh => "Tanh",
                    };
                    let a = format!("A{name}");
                    nodes.push(node(
                        op,
                        &format!("{}{name}", op.to_lowercase()),
                        &[&z],
                        &a,
                        &[],
                    ));
                    a
                }
            };
            outputs.push(a);
        }
        below = match outputs.as_slice() {
            [one] => one.clone(),
            many => {
                let a = format!("A{}", l + 1);
                let inputs: Vec<&str> = many.iter().map(String::as_str).collect();
                nodes.push(node(
                    "Concat",
                    &format!("concat{}", l + 1),
                    &inputs,
                    &a,
                    &[("axis", 1)],
                ));
                a
            }
        };
    }
    nodes.push(node(
        "Softmax",
        "softmax",
        &["logits"],
        "probabilities",
        &[("axis", 1)],
    ));
    let graph = GraphProto {
        node: nodes,
        name: Some("scratchnet".into()),
        initializer,
        doc_string: Some(format!("{arch}: {}", arch.spec())),
        input: vec![value(
            "pixels",
            arch.inputs,
            "the pixels, 0 to 1 (see metadata `preparation`)",
        )],
        output: vec![
            value(
                "logits",
                arch.classes,
                "the last layer's outputs, before softmax",
            ),
            value("probabilities", arch.classes, "softmax of the logits"),
        ],
    };
    let labels: Vec<String> = (0..arch.classes).map(|c| c.to_string()).collect();
    let mut props = vec![
        ("labels", labels.join(",")),
        ("preparation", PREPARATION.to_string()),
        ("architecture", format!("{arch} ({})", arch.spec())),
        ("scratchnet.version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    // The training summary: configuration, final accuracies, steps and data
    // checksums, as the model file records them.
    props.extend(
        model
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("scratchnet.") && k.as_str() != "scratchnet.version")
            .map(|(k, v)| (k.as_str(), v.clone())),
    );
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("scratchnet".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: Some(1),
        doc_string: Some("The MNIST notebook's network, trained with scratchnet".into()),
        graph: Some(graph),
        metadata_props: props
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Writes `model` to `path` as ONNX, atomically.
pub fn export(model: &Model, path: &Path) -> Result<()> {
    write_atomic(path, &to_onnx(model))
}

/// A float32 initializer of `t`'s values, shaped `dims`.
fn tensor(t: &ParamTensor, dims: &[usize], params: &[f32]) -> TensorProto {
    let raw: Vec<u8> = params[t.range.clone()]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(FLOAT),
        name: Some(t.name.clone()),
        raw_data: Some(raw),
    }
}

/// A node of the default (ONNX) domain with integer attributes.
fn node(op: &str, name: &str, inputs: &[&str], output: &str, ints: &[(&str, i64)]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        domain: None,
        attribute: ints
            .iter()
            .map(|&(k, i)| AttributeProto {
                name: Some(k.to_string()),
                r#type: Some(ATTRIBUTE_INT),
                i: Some(i),
            })
            .collect(),
    }
}

/// A float32 `[N, width]` graph input or output.
fn value(name: &str, width: usize, doc: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            dim_value: None,
                            dim_param: Some("N".into()),
                        },
                        Dimension {
                            dim_value: Some(width as i64),
                            dim_param: None,
                        },
                    ],
                }),
            }),
        }),
        doc_string: Some(doc.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Arch, Layout};
    use std::collections::BTreeMap;

    /// The file decodes to the graph described: nodes in order with their
    /// inputs, initializers named and shaped as the notebook's tensors, the
    /// opset and IR version, and the metadata.
    #[test]
    fn the_notebooks_network_as_nodes() {
        let layout = Layout::new(&Arch::parse("relu:128|tanh:64,relu:48", 784, 10).unwrap());
        let params: Vec<f32> = (0..layout.len).map(|i| i as f32).collect();
        let mut metadata = BTreeMap::new();
        metadata.insert("scratchnet.steps".to_string(), "7".to_string());
        let model = Model {
            layout,
            params,
            metadata,
            extra: BTreeMap::new(),
        };
        let m = ModelProto::decode(&to_onnx(&model)[..]).unwrap();
        assert_eq!(
            (m.ir_version, m.opset_import[0].version),
            (Some(7), Some(13))
        );
        let g = m.graph.unwrap();
        let ops: Vec<(String, Vec<String>, String)> = g
            .node
            .iter()
            .map(|n| {
                (
                    n.op_type.clone().unwrap(),
                    n.input.clone(),
                    n.output[0].clone(),
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ops,
            [
                ("Gemm", s(&["pixels", "W11", "b11"]), "Z11"),
                ("Relu", s(&["Z11"]), "A11"),
                ("Gemm", s(&["pixels", "W12", "b12"]), "Z12"),
                ("Tanh", s(&["Z12"]), "A12"),
                ("Concat", s(&["A11", "A12"]), "A1"),
                ("Gemm", s(&["A1", "W2", "b2"]), "Z2"),
                ("Relu", s(&["Z2"]), "A2"),
                ("Gemm", s(&["A2", "W3", "b3"]), "logits"),
                ("Softmax", s(&["logits"]), "probabilities"),
            ]
            .map(|(o, i, out)| (o.to_string(), i, out.to_string()))
        );
        let shapes: Vec<(String, Vec<i64>, usize)> = g
            .initializer
            .iter()
            .map(|t| {
                let raw = t.raw_data.as_ref().unwrap().len();
                (t.name.clone().unwrap(), t.dims.clone(), raw)
            })
            .collect();
        assert_eq!(shapes[0], ("W11".into(), vec![128, 784], 128 * 784 * 4));
        assert_eq!(shapes[1], ("b11".into(), vec![128], 128 * 4));
        assert_eq!(shapes[7], ("b3".into(), vec![10], 40));
        // The values are the model's: W12 follows W11 in the flat buffer.
        let w12 = g.initializer[2].raw_data.as_ref().unwrap();
        assert_eq!(
            f32::from_le_bytes(w12[..4].try_into().unwrap()),
            (128 * 784) as f32
        );
        let props: BTreeMap<_, _> = m
            .metadata_props
            .iter()
            .map(|p| (p.key.clone().unwrap(), p.value.clone().unwrap()))
            .collect();
        assert_eq!(props["labels"], "0,1,2,3,4,5,6,7,8,9");
        assert_eq!(props["scratchnet.steps"], "7");
        assert!(props["architecture"].contains("relu:128|tanh:64,relu:48"));
    }
}
