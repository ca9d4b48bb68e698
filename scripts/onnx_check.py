#!/usr/bin/env python3
"""Checks an ONNX file written by `scratchnet export` with ONNX's own tools:
onnx's checker with full checking (types and shapes inferred through the
graph), then ONNX Runtime on the MNIST test images, against scratchnet's
logits for the same images.

    python3 scripts/onnx_check.py MODEL.onnx MNIST_DIR EXPECTED_LOGITS.f32

EXPECTED_LOGITS.f32 holds scratchnet's logits of the 10,000 test images,
float32 little-endian, row by row ([10000, classes]). Prints the versions
checked and the worst difference; exits 1 on any disagreement.
(`pip install onnx onnxruntime numpy`; slow-tests/tests/onnx.rs runs this when
SCRATCHNET_PYTHON names a Python that has them.)
"""

import gzip
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    path, mnist, expected = sys.argv[1:4]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    for key in ("labels", "preparation", "architecture", "scratchnet.version"):
        assert key in props, f"metadata lacks {key}"
    with gzip.open(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 256.0
    with gzip.open(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    runtime = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits, probs = runtime.run(["logits", "probabilities"], {"pixels": images})
    want = np.fromfile(expected, dtype="<f4").reshape(logits.shape)
    worst = float(np.max(np.abs(logits - want) / (1.0 + np.abs(want))))
    flips = int(np.sum(np.argmax(logits, 1) != np.argmax(want, 1)))
    sums = float(np.max(np.abs(probs.sum(1) - 1.0)))
    accuracy = float(np.mean(np.argmax(probs, 1) == labels))
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}: checker passed (full); "
          f"IR {model.ir_version}, opset {model.opset_import[0].version}; "
          f"logits against scratchnet's: worst |d|/(1+|x|) {worst:.1e}, {flips} predictions differ; "
          f"probabilities sum to 1 within {sums:.1e}; test accuracy {accuracy:.4f}")
    # Seen (2026-12-06): logits 3.2e-6 apart, sums within 2.4e-7; the
    # bounds are about 10x those.
    if worst > 3e-5 or flips > 0 or sums > 3e-6:
        sys.exit(1)


if __name__ == "__main__":
    main()
