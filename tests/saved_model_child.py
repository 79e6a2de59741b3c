"""The fresh process of tests/test_saving.py: loads a SavedModel, writes outputs and gradients.

    python saved_model_child.py EXPORT_DIR INPUTS.npy OUT.npz
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def variables_by_path(root):
    """{'model/_layers/head/kernel': variable, ...}: the checkpoint paths, which a SavedModel
    keeps, so the original object and the loaded one name their variables alike."""
    view = tf.train.TrackableView(root)
    found, seen, pending = {}, set(), [("", root)]
    while pending:
        prefix, obj = pending.pop()
        for name, child in view.children(obj).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = prefix + name
            if isinstance(child, tf.Variable):
                found[path] = child
            else:
                pending.append((path + "/", child))
    return found


def outputs_and_gradients(model, x):
    """y = model(x), and the gradients of sum(y**2) for x and each trainable variable."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)  # may build the model: its variables are looked up after
        loss = tf.reduce_sum(y * y)
    variables = {p: v for p, v in variables_by_path(model).items() if v.trainable}
    grads = tape.gradient(loss, [x, *variables.values()])
    return {"y": y.numpy(), "dx": grads[0].numpy(),
            **{path: g.numpy() for path, g in zip(variables, grads[1:])}}


def main(export_dir, inputs_path, out_path):
    import fusedlayers  # noqa: F401  (registers the ops and their gradients)

    loaded = tf.saved_model.load(export_dir)
    x = tf.constant(np.load(inputs_path))
    served = loaded.signatures["serving_default"](x=x)["output_0"]
    np.savez(out_path, served=served.numpy(), **outputs_and_gradients(loaded, x))


if __name__ == "__main__":
    main(*sys.argv[1:])
