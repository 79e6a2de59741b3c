"""The fused ops: thin wrappers over the C++ custom ops, with their gradients registered."""

from fusedlayers.ops._conv import fused_conv2d, fused_conv2d_transpose
from fusedlayers.ops._dense import fused_dense

__all__ = ["fused_conv2d", "fused_conv2d_transpose", "fused_dense"]
