"""What the fused Keras layers share: argument checks, the activation split and the stock fallback."""

import keras
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

from fusedlayers import activations


def check_backend(layer_name):
    """The fused ops are TensorFlow ops: any other Keras backend cannot run them."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"fusedlayers.keras.{layer_name} runs TensorFlow ops and needs the TensorFlow Keras "
            f"backend, but the backend is {keras.backend.backend()!r}: set "
            f"KERAS_BACKEND=tensorflow, or use keras.layers.{layer_name}"
        )


def quantized_policy_reason(layer_name, dtype_policy):
    """Why a fused layer cannot take `dtype_policy`, or None when it can."""
    mode = dtype_policy.quantization_mode
    if mode is None:
        return None
    return (
        f"fusedlayers.keras.{layer_name} does not support the quantized dtype policy "
        f"{dtype_policy.name!r} (quantization mode {mode!r}); use keras.layers.{layer_name} "
        f"for quantized layers"
    )


def split_activation(activation):
    """(the activation the fused op applies, the callable applied after it or None).

    Activations in fusedlayers.activations run inside the op; any other Keras
    activation (softmax, a custom function) is applied to the op's linear output,
    exactly as the stock layer would apply it.
    """
    try:
        return activations.get(activation), None
    except ValueError:
        return activations.get(None), activation


def use_stock_path(inputs):
    """True where the fused ops cannot run: inside an XLA cluster, or on sparse inputs.

    Our ops have no XLA kernel, so under `tf.function(jit_compile=True)` (or a Keras
    model compiled with XLA anyway) the layer runs the stock composition, which XLA
    compiles and fuses itself.
    """
    if isinstance(inputs, (tf.SparseTensor, tf.RaggedTensor)):
        return True
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


class FusedLayerMixin:
    """Behaviour every fused Keras layer adds on top of its stock base class.

    `supports_jit = False` tells Keras's trainer (`model_supports_jit`) that the model
    cannot be XLA-compiled as a whole, so `jit_compile="auto"` keeps the fused ops and
    `jit_compile=True` falls back to no XLA with Keras's warning.
    """

    # Constructor arguments the fused op cannot honour, with the value meaning "unused".
    NEUTRAL_ARGUMENTS = {}

    @classmethod
    def unsupported_reason(cls, arguments):
        """Why the constructor arguments (or a stock layer's config) cannot be honoured, or None."""
        for name, neutral in cls.NEUTRAL_ARGUMENTS.items():
            value = arguments.get(name, neutral)
            if value != neutral:
                if isinstance(value, dict) and "class_name" in value:  # a serialized object
                    value = value["class_name"]
                return (
                    f"fusedlayers.keras.{cls.__name__} does not support {name}={value!r}: the "
                    f"fused op has no such path. Use keras.layers.{cls.__name__} for this layer "
                    f"(fuse() leaves such layers stock)."
                )
        return None

    def _check_arguments(self, arguments):
        """Before the stock constructor: reject what the fused op cannot honour."""
        check_backend(type(self).__name__)
        reason = self.unsupported_reason(arguments)
        if reason is not None:
            raise ValueError(reason)

    def _finish_init(self):
        """After the stock constructor: the dtype policy is known; tell Keras about XLA."""
        reason = quantized_policy_reason(type(self).__name__, self.dtype_policy)
        if reason is not None:
            raise ValueError(reason)
        self.supports_jit = False

    def compute_cast(self, value):
        """A variable's value or an input in the compute dtype, cast only where it differs.

        A variable already in that dtype goes to the op as its backend variable (what
        `variable.value` gives: a tf.Variable, or a tensor inside a stateless or autocast
        scope), which the op reads itself; keras.ops.cast read it as a separate op first
        and cost ~40 us of a 16-wide Dense's ~270 us eager call, twice.
        """
        if value is None:
            return None
        if isinstance(value, keras.Variable):
            value = value.value
        if isinstance(value, (tf.Tensor, tf.Variable)) and value.dtype == self.compute_dtype:
            return value
        return keras.ops.cast(value, self.compute_dtype)

    def enable_lora(self, *args, **kwargs):
        raise NotImplementedError(
            f"fusedlayers.keras.{type(self).__name__} does not support LoRA; use "
            f"keras.layers.{type(self).__name__}"
        )

    def quantize(self, *args, **kwargs):
        raise NotImplementedError(
            f"fusedlayers.keras.{type(self).__name__} cannot be quantized; quantize a model "
            f"with keras.layers.{type(self).__name__} instead"
        )
