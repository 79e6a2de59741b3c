"""Fused neural-network layers for TensorFlow: C++ custom ops under lazily built tf.Modules."""

from fusedlayers import _loader  # noqa: F401  (loads the ops and checks TF's version first)
from fusedlayers import activations, ops
from fusedlayers.build_info import build_info
from fusedlayers.conv import Conv2D, Conv2DTranspose
from fusedlayers.dense import Dense
from fusedlayers.layer import Layer
from fusedlayers.module import Module
from fusedlayers.reshaping import Flatten, Reshape
from fusedlayers.reuse import ReuseElements
from fusedlayers.sequential import Sequential
from fusedlayers import keras  # registers the Keras layers, so saved models load

__version__ = "0.1.0"

__all__ = [
    "Conv2D", "Conv2DTranspose", "Dense", "Flatten", "Layer", "Module", "Reshape",
    "ReuseElements", "Sequential", "activations", "build_info", "keras", "ops",
]
