"""fl.ops.fused_dense against tf.matmul + bias_add + activation, forward and gradients."""

import numpy as np
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import FLOAT_DTYPES, assert_close
from fusedlayers.activations import NAMES, reference

SHAPES = [  # (x shape, units)
    ((1, 1), 1),
    ((7, 13), 5),
    ((2, 3, 17), 9),
    ((2, 2, 3, 6), 4),
    ((0, 8), 3),
    ((33, 70), 129),
]


def stock_dense(x, kernel, bias, activation):
    z = tf.tensordot(x, kernel, axes=[[x.shape.rank - 1], [0]])
    if bias is not None:
        z = z + bias
    return reference(activation)(z)


def random(shape, dtype, scale=1.0):
    return tf.cast(np.random.uniform(-scale, scale, size=shape), dtype)


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("x_shape,units", SHAPES)
def test_forward_matches_stock(activation, dtype, x_shape, units):
    x = random(x_shape, dtype, 2.0)
    kernel = random((x_shape[-1], units), dtype, 0.5)
    bias = random((units,), dtype, 0.5)
    expected = stock_dense(tf.cast(x, tf.float64), tf.cast(kernel, tf.float64),
                           tf.cast(bias, tf.float64), activation)
    actual = fl.ops.fused_dense(x, kernel, bias, activation=activation)
    assert actual.dtype == dtype
    assert_close(actual, expected, dtype)


@pytest.mark.parametrize("activation", ["linear", "gelu", "relu"])
def test_forward_without_bias(activation):
    x, kernel = random((9, 5), tf.float32), random((5, 6), tf.float32)
    assert_close(fl.ops.fused_dense(x, kernel, activation=activation),
                 stock_dense(x, kernel, None, activation))


def test_rank1_input_is_one_row():
    x, kernel, bias = random((5,), tf.float32), random((5, 3), tf.float32), random((3,), tf.float32)
    assert_close(fl.ops.fused_dense(x, kernel, bias, "tanh"),
                 stock_dense(x[tf.newaxis], kernel, bias, "tanh")[0])


def test_zero_depth_gives_activation_of_bias():
    x, kernel, bias = tf.zeros((4, 0)), tf.zeros((0, 3)), random((3,), tf.float32)
    assert_close(fl.ops.fused_dense(x, kernel, bias, "sigmoid"),
                 tf.broadcast_to(tf.sigmoid(bias), (4, 3)))


def test_leaky_relu_slope_from_partial():
    import functools

    import keras

    act = functools.partial(keras.activations.leaky_relu, negative_slope=0.05)
    x, kernel = random((6, 4), tf.float32, 3.0), random((4, 5), tf.float32)
    assert_close(fl.ops.fused_dense(x, kernel, activation=act),
                 tf.nn.leaky_relu(x @ kernel, alpha=0.05))


@pytest.mark.parametrize("activation", NAMES)
def test_gradient_numerically(activation):
    """Theoretical vs numerical Jacobians in float64 for x, kernel and bias."""
    x = random((3, 4), tf.float64, 2.0)
    kernel = random((4, 5), tf.float64)
    bias = random((5,), tf.float64)
    theoretical, numerical = tf.test.compute_gradient(
        lambda x, k, b: fl.ops.fused_dense(x, k, b, activation=activation), [x, kernel, bias])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-5)


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("use_bias", [True, False])
def test_gradient_matches_stock_autodiff(activation, dtype, use_bias):
    x = random((2, 5, 11), dtype, 2.0)
    kernel = random((11, 7), dtype)
    bias = random((7,), dtype) if use_bias else None
    upstream = random((2, 5, 7), dtype)

    def grads(fn, dt):
        xs = [tf.cast(v, dt) for v in (x, kernel) + ((bias,) if use_bias else ())]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            y = fn(xs[0], xs[1], xs[2] if use_bias else None, activation)
            loss = tf.reduce_sum(y * tf.cast(upstream, dt))
        return tape.gradient(loss, xs)

    expected = grads(stock_dense, tf.float64)
    actual = grads(lambda x, k, b, a: fl.ops.fused_dense(x, k, b, activation=a), dtype)
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        assert_close(a, e, dtype, rtol=None if dtype != tf.float32 else 2e-5)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("batch", range(1, 10))
def test_small_batch_gradient_matches_stock_autodiff(dtype, batch):
    """Batches of 1-8 rows take the one-pass backward (float, double, bfloat16), 9 the
    two GEMMs: every vector edge of W's rows (1, 15, 17, 67 columns; 16 float lanes), an
    activation whose gradient reads y (relu), one that reads the preactivation (silu),
    and linear, against float64 autodiff."""
    for units, activation in [(1, "relu"), (15, "silu"), (17, "linear"), (67, "relu")]:
        x = random((batch, 6), dtype, 2.0)
        kernel = random((6, units), dtype)
        bias = random((units,), dtype)
        upstream = random((batch, units), dtype)

        def grads(fn, dt):
            xs = [tf.cast(v, dt) for v in (x, kernel, bias)]
            with tf.GradientTape() as tape:
                tape.watch(xs)
                y = fn(*xs, activation)
            return tape.gradient(y, xs, output_gradients=tf.cast(upstream, dt))

        expected = grads(stock_dense, tf.float64)
        actual = grads(lambda x, k, b, a: fl.ops.fused_dense(x, k, b, activation=a), dtype)
        for a, e in zip(actual, expected):
            assert a.dtype == dtype
            assert_close(a, e, dtype, rtol=None if dtype != tf.float32 else 2e-5)


def test_batch_one_bfloat16_weight_gradient_rounds_to_nearest_even():
    """With one row, each dW element is one product of two bfloat16 values (exact in
    float32), rounded once to bfloat16: it must equal TensorFlow's float32 -> bfloat16
    cast (nearest even) bit for bit, over a vector edge (37 columns)."""
    x = random((1, 9), tf.bfloat16, 3.0)
    kernel = random((9, 37), tf.bfloat16)
    upstream = random((1, 37), tf.bfloat16, 3.0)
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        y = fl.ops.fused_dense(x, kernel, None, activation="linear")
    dkernel = tape.gradient(y, kernel, output_gradients=upstream)
    exact = tf.transpose(tf.cast(x, tf.float32)) * tf.cast(upstream, tf.float32)
    expected = tf.cast(exact, tf.bfloat16)
    np.testing.assert_array_equal(tf.bitcast(dkernel, tf.uint16).numpy(),
                                  tf.bitcast(expected, tf.uint16).numpy())


@pytest.mark.parametrize("batch", range(1, 6))
@pytest.mark.parametrize("units", [1, 15, 17, 67, 1500, 4100])
def test_small_batch_bfloat16_forward_matches_stock(batch, units):
    """A bfloat16 layer with 1-4 rows runs strips of W's columns read in place (5 rows:
    the packed product): every vector edge, and outputs wider than one strip (4096 / rows
    columns), against stock in float64, also where the preactivation is saved (gelu)."""
    x = random((batch, 37), tf.bfloat16, 2.0)
    kernel = random((37, units), tf.bfloat16)
    bias = random((units,), tf.bfloat16)
    for activation in ("relu", "gelu"):
        expected = stock_dense(*[tf.cast(v, tf.float64) for v in (x, kernel, bias)], activation)
        actual = fl.ops.fused_dense(x, kernel, bias, activation=activation)
        assert actual.dtype == tf.bfloat16
        assert_close(actual, expected, tf.bfloat16)


def test_batch_one_bfloat16_forward_rounds_once():
    """With one row and depth 1 each output is one exact product plus the bias in float32,
    activated and rounded once to bfloat16: TensorFlow's float32 result cast to bfloat16,
    bit for bit, across a strip boundary (4100 columns)."""
    x = random((1, 1), tf.bfloat16, 3.0)
    kernel = random((1, 4100), tf.bfloat16)
    bias = random((4100,), tf.bfloat16)
    actual = fl.ops.fused_dense(x, kernel, bias, activation="relu")
    f32 = [tf.cast(v, tf.float32) for v in (x, kernel, bias)]
    expected = tf.cast(tf.nn.relu(f32[0] * f32[1] + f32[2]), tf.bfloat16)
    np.testing.assert_array_equal(tf.bitcast(actual, tf.uint16).numpy(),
                                  tf.bitcast(expected, tf.uint16).numpy())


def test_small_batch_gradient_keeps_nan_and_inf():
    """bfloat16's rounding in the one-pass backward keeps NaN a NaN and inf an inf, where
    stock's gradient has them."""
    x = tf.constant([[1.0, float("nan"), 2.0]], tf.bfloat16)
    kernel = tf.constant([[1.0, -2.0], [0.5, 1.0], [float("inf"), 3.0]], tf.bfloat16)
    bias = tf.zeros([2], tf.bfloat16)
    upstream = tf.constant([[1.0, 2.0]], tf.bfloat16)

    def grads(fn):
        xs = [tf.cast(v, tf.float32) for v in (x, kernel, bias)] if fn is stock_dense else [x, kernel, bias]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            y = fn(*xs, "linear")
        return [tf.cast(g, tf.float32).numpy() for g in tape.gradient(y, xs, output_gradients=tf.cast(upstream, xs[0].dtype))]

    for a, e in zip(grads(lambda *args: fl.ops.fused_dense(*args[:3], activation=args[3])),
                    grads(stock_dense)):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e))
        np.testing.assert_array_equal(np.isinf(a), np.isinf(e))
        finite = np.isfinite(e)
        np.testing.assert_allclose(a[finite], e[finite], rtol=1e-2)


@pytest.mark.parametrize("activation", NAMES)
def test_gradient_at_exactly_zero_preactivation_matches_stock(activation):
    """Where z is exactly 0, activations with a kink (relu, relu6, leaky_relu, elu, selu)
    take TensorFlow's one-sided slope, as the stock gradient does."""
    x = tf.constant([[1.0, -1.0], [2.0, 0.5]])
    kernel = tf.constant([[1.0, 0.5], [1.0, -1.0]])  # z row 0: [0, 1]; row 1: [2.5, 0.5]
    bias = tf.constant([0.0, -0.5])                  # z: [[0, 0.5], [2.5, 0]]

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel, bias])
            y = fn(x, kernel, bias, activation)
        return tape.gradient(y, [x, kernel, bias])

    expected = grads(stock_dense)
    actual = grads(lambda x, k, b, a: fl.ops.fused_dense(x, k, b, activation=a))
    for a, e in zip(actual, expected):
        assert_close(a, e, tf.float32)


def test_gradient_of_empty_batch_is_zero():
    x, kernel, bias = tf.zeros((0, 4)), random((4, 3), tf.float32), random((3,), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        y = fl.ops.fused_dense(x, kernel, bias, "relu")
    dx, dk, db = tape.gradient(y, [x, kernel, bias])
    assert dx.shape == (0, 4)
    np.testing.assert_array_equal(dk, np.zeros((4, 3)))
    np.testing.assert_array_equal(db, np.zeros((3,)))


def activation_gradient(activation, z, upstream):
    """dy * act'(z) by autodiff of the stock activation, in z's dtype."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        y = reference(activation)(z)
    return tape.gradient(y, z, output_gradients=upstream)


@pytest.mark.parametrize("activation", ["relu", "gelu", "sigmoid"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("rows,units", [(3, 2), (70_001, 3), (5, 2500)])
def test_zero_depth_gradient_is_column_sum_of_activation_gradient(activation, dtype, rows, units):
    """K = 0: y = act(bias) in every row and the bias gradient is the column sum of
    dy * act'(bias), summed apart from the (empty) weight-gradient GEMM; the sizes cross
    the sum's row blocks and chunks, and a row wider than a chunk."""
    x, kernel = tf.zeros((rows, 0), dtype), tf.zeros((0, units), dtype)
    bias, upstream = random((units,), dtype), random((rows, units), dtype)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        y = fl.ops.fused_dense(x, kernel, bias, activation)
    dx, dk, db = tape.gradient(y, [x, kernel, bias], output_gradients=upstream)
    z = tf.broadcast_to(tf.cast(bias, tf.float64), (rows, units))
    assert_close(y, reference(activation)(z), dtype)
    assert dx.shape == (rows, 0) and dk.shape == (0, units)
    expected_db = tf.reduce_sum(
        activation_gradient(activation, z, tf.cast(upstream, tf.float64)), axis=0)
    # Stock gelu's float64 gradient is off by up to ~1e-8 relative, and every row shares
    # one z here, so that error adds up over the rows instead of averaging out.
    assert_close(db, expected_db, dtype, rtol=1e-6 if dtype == tf.float64 else None)


def test_tf_function_with_unknown_batch():
    kernel, bias = random((6, 4), tf.float32), random((4,), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
    def f(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fl.ops.fused_dense(x, kernel, bias, "gelu")
            loss = tf.reduce_sum(y)
        return y, tape.gradient(loss, x)

    for batch in (1, 5, 0):
        x = random((batch, 6), tf.float32)
        y, dx = f(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y_ref = stock_dense(x, kernel, bias, "gelu")
            loss_ref = tf.reduce_sum(y_ref)
        assert_close(y, y_ref)
        assert_close(dx, tape.gradient(loss_ref, x))


class TestErrors:
    def test_unknown_activation(self):
        with pytest.raises(ValueError, match="relu6"):
            fl.ops.fused_dense(tf.ones((2, 3)), tf.ones((3, 4)), activation="mish")

    def test_integer_input(self):
        with pytest.raises(TypeError, match="x must be one of"):
            fl.ops.fused_dense(tf.ones((2, 3), tf.int32), tf.ones((3, 4)))

    def test_dtype_mismatch(self):
        with pytest.raises(TypeError, match="kernel must have the input's dtype float32"):
            fl.ops.fused_dense(tf.ones((2, 3)), tf.ones((3, 4), tf.float64))

    def test_depth_mismatch(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"kernel must have shape \[K, N\]"):
            fl.ops.fused_dense(tf.ones((2, 3)), tf.ones((4, 4)))

    def test_kernel_rank(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="kernel must have rank 2"):
            fl.ops.fused_dense(tf.ones((2, 3)), tf.ones((3, 4, 1)))

    def test_x_rank0(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="x must have rank >= 2"):
            fl.ops.fused_dense(tf.ones(()), tf.ones((1, 4)))

    def test_bias_shape(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"bias must have shape \[N\] = \[4\]"):
            fl.ops.fused_dense(tf.ones((2, 3)), tf.ones((3, 4)), tf.ones((5,)))

    def test_shape_function_rejects_at_trace_time(self):
        @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([5, 2])])
        def f(x, k):
            return fl.ops.fused_dense(x, k)

        with pytest.raises(ValueError, match=r"kernel must have shape \[K, N\]"):
            f.get_concrete_function()

    def test_output_size_overflow(self):
        # A [2^40, 0] input is empty, but its output [2^40, 2^30] would not fit in int64.
        x = tf.zeros((2**40, 0))
        with pytest.raises(tf.errors.InvalidArgumentError, match="overflows int64"):
            fl.ops.fused_dense(x, tf.zeros((0, 2**30)))

    def test_shape_function_rejects_output_size_overflow(self):
        # [2^62, 0] x [0, 2] -> [2^62, 2]: 2^63 elements. TensorFlow aborts the process on
        # such a static shape (the tape records it), so tracing must refuse it first.
        spec = tf.TensorSpec([2 ** 62, 0], tf.float32)
        traced = tf.function(lambda x: fl.ops.fused_dense(x, tf.zeros([0, 2])))
        with pytest.raises(ValueError, match="output size overflows int64"):
            traced.get_concrete_function(spec)

    def test_grad_op_checks_dy(self):
        from fusedlayers._loader import gen_ops

        with pytest.raises(tf.errors.InvalidArgumentError, match="dy must have the forward"):
            gen_ops.fused_layers_fused_dense_grad(
                dy=tf.ones((2, 5)), x=tf.ones((2, 3)), kernel=tf.ones((3, 4)),
                y=tf.ones((2, 4)), preactivation=tf.ones((0,)), activation="relu")

    def test_grad_op_checks_preactivation(self):
        from fusedlayers._loader import gen_ops

        with pytest.raises(tf.errors.InvalidArgumentError, match="preactivation must have"):
            gen_ops.fused_layers_fused_dense_grad(
                dy=tf.ones((2, 4)), x=tf.ones((2, 3)), kernel=tf.ones((3, 4)),
                y=tf.ones((2, 4)), preactivation=tf.ones((0,)), activation="gelu")

    def test_op_rejects_unknown_activation_attr(self):
        from fusedlayers._loader import gen_ops

        with pytest.raises(tf.errors.InvalidArgumentError, match="activation must be one of"):
            gen_ops.fused_layers_fused_dense(x=tf.ones((2, 3)), kernel=tf.ones((3, 4)), bias=[],
                                             activation="bogus")

    def test_op_rejects_two_biases(self):
        from fusedlayers._loader import gen_ops

        with pytest.raises(tf.errors.InvalidArgumentError, match="num_bias must be 0 or 1"):
            gen_ops.fused_layers_fused_dense(x=tf.ones((2, 3)), kernel=tf.ones((3, 4)),
                                             bias=[tf.ones(4), tf.ones(4)])


@pytest.mark.parametrize("op_name", ["dense", "conv2d", "conv2d_transpose"])
@pytest.mark.parametrize("activation", ["linear", "relu", "gelu"])
def test_gradient_depends_on_the_forward_only_where_it_reads_its_outputs(op_name, activation):
    """A linear activation's gradient reads neither y nor the preactivation: its gradient
    op takes no input from the forward op (so TensorFlow prunes the forward when only
    gradients are used, as it does stock's), and its gradients are still right."""
    rng = np.random.default_rng(3)
    if op_name == "dense":
        x = tf.constant(rng.uniform(-1, 1, (5, 7)), tf.float32)
        kernel = tf.constant(rng.uniform(-1, 1, (7, 4)), tf.float32)
        run = lambda x, k, b: fl.ops.fused_dense(x, k, b, activation)
        stock = lambda x, k, b: tf.nn.bias_add(tf.matmul(x, k), b)
    else:
        x = tf.constant(rng.uniform(-1, 1, (2, 6, 6, 3)), tf.float32)
        kernel = tf.constant(rng.uniform(-1, 1, (3, 3, 4, 3) if op_name == "conv2d_transpose"
                                         else (3, 3, 3, 4)), tf.float32)
        run = lambda x, k, b: getattr(fl.ops, "fused_" + op_name)(
            x, k, b, strides=2, padding="same", activation=activation)
        stock = lambda x, k, b: tf.nn.bias_add(
            tf.nn.conv2d_transpose(x, k, [2, 12, 12, 4], 2, "SAME") if op_name == "conv2d_transpose"
            else tf.nn.conv2d(x, k, 2, "SAME"), b)
    bias = tf.constant(rng.uniform(-1, 1, 4), tf.float32)

    def gradients(fn):
        @tf.function
        def grads(x, k, b):
            with tf.GradientTape() as tape:
                tape.watch([x, k, b])
                y = fn(x, k, b)
            return tape.gradient(y, [x, k, b], output_gradients=tf.ones_like(y) * 0.5)
        return grads

    fused_grads = gradients(run)
    graph = fused_grads.get_concrete_function(x, kernel, bias).graph
    ops = graph.get_operations()
    forward = [op for op in ops if op.type.startswith("FusedLayers>") and not op.type.endswith("Grad")]
    backward = [op for op in ops if op.type.startswith("FusedLayers>") and op.type.endswith("Grad")]
    assert len(forward) == 1 and len(backward) == 1
    reads_forward = any(t.op is forward[0] for t in backward[0].inputs)
    assert reads_forward == (activation != "linear")
    if activation == "linear":
        for got, want in zip(fused_grads(x, kernel, bias), gradients(stock)(x, kernel, bias)):
            assert_close(got, want, tf.float32)
