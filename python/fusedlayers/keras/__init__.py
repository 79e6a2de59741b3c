"""Keras 3 drop-ins for the fused layers, and fuse(model) to swap them into an existing model."""

from fusedlayers.keras.conv import Conv2D, Conv2DTranspose
from fusedlayers.keras.dense import Dense
from fusedlayers.keras._fuse import FuseReport, fuse, fuse_in_place

__all__ = ["Conv2D", "Conv2DTranspose", "Dense", "FuseReport", "fuse", "fuse_in_place"]
