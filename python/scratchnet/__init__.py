"""scratchnet: the MNIST notebook's neural network, written from scratch in Rust.

    import scratchnet as sn
    (Xtr, ytr), (Xva, yva), (Xte, yte) = sn.load_mnist()
    model = sn.train(Xtr, ytr, Xva, yva, preset="seed", iters=500, callback=print)
    model.evaluate(Xte, yte)
    model.save("m.safetensors"); model = sn.load("m.safetensors")
"""

from ._scratchnet import Model, __version__, load, load_mnist, train

__all__ = ["Model", "load", "load_mnist", "train", "__version__"]
