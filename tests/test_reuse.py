"""fl.ReuseElements: a new list is filled, a filled list is reused, conflicts are refused."""

import functools

import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import assert_close


def network(inputs, layers):
    reuse = fl.ReuseElements(layers)
    hidden = reuse(fl.Dense(6, activation="relu"))(inputs)
    return reuse(fl.Dense(3))(hidden)


def reference(layers, inputs):
    first, second = layers
    return tf.nn.relu(inputs @ first.kernel + first.bias) @ second.kernel + second.bias


def encoder(data, layers, code_size):
    reuse = fl.ReuseElements(layers)
    hidden = reuse(fl.Dense(8, activation="relu"))(data)
    return reuse(fl.Dense(code_size))(hidden)


def decoder(code, layers):
    reuse = fl.ReuseElements(layers)
    hidden = reuse(fl.Dense(8, activation="relu"))(code)
    return reuse(fl.Dense(5))(hidden)


def auto_encoder(data, layers, code_size):
    reuse = fl.ReuseElements(layers)
    my_encoder = functools.partial(encoder, layers=reuse([]), code_size=code_size)
    my_decoder = functools.partial(decoder, layers=reuse([]))
    recon = my_decoder(my_encoder(data))
    return recon, tf.reduce_mean((recon - data) ** 2)


def test_plain_values_as_in_the_seed():
    elements = []
    reuse = fl.ReuseElements(elements)
    assert reuse(42) == 42 and reuse(12) == 12 and elements == [42, 12]
    reuse = fl.ReuseElements(elements)
    assert reuse(17) == 42 and reuse(34) == 12 and elements == [42, 12]


def test_new_list_is_filled_then_reused():
    layers = []
    x = tf.random.normal((4, 5))
    y = network(x, layers)
    assert [type(layer) for layer in layers] == [fl.Dense, fl.Dense]
    first = list(layers)
    assert_close(network(x, layers), y)
    assert all(a is b for a, b in zip(layers, first)) and len(layers) == 2
    assert_close(y, reference(layers, x))


def test_partial_binds_an_independent_network():
    x = tf.random.normal((4, 5))
    mine = functools.partial(network, layers=[])
    other = functools.partial(network, layers=[])
    y = mine(x)
    assert_close(mine(x), y)
    assert len(mine.keywords["layers"]) == 2 and len(other.keywords["layers"]) == 0
    other(x)
    assert not tf.reduce_all(mine.keywords["layers"][0].kernel == other.keywords["layers"][0].kernel)
    assert_close(network(x, mine.keywords["layers"]), y)  # the same list shares the weights


def test_parent_composes_children_by_sub_lists():
    model = functools.partial(auto_encoder, layers=[], code_size=2)
    data = tf.random.normal((3, 5))
    recon, loss = model(data)
    layers = model.keywords["layers"]
    assert [[type(layer) for layer in child] for child in layers] == [[fl.Dense] * 2] * 2
    assert layers[0][1].units == 2 and layers[1][1].units == 5
    again, _ = model(data)
    assert_close(again, recon)
    assert_close(loss, tf.reduce_mean((recon - data) ** 2))
    code = reference(layers[0], data)
    assert_close(recon, reference(layers[1], code))


def test_training_through_a_tracked_list():
    holder = tf.Module()
    holder.layers = []
    data = tf.random.normal((8, 5))
    optimizer = tf.keras.optimizers.SGD(0.1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            _, loss = auto_encoder(data, holder.layers, code_size=2)
        variables = holder.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = [float(step()) for _ in range(5)]
    assert len(holder.trainable_variables) == 8
    assert losses[-1] < losses[0]


def test_first_call_inside_tf_function_then_retrace():
    layers = []
    my_network = functools.partial(network, layers=layers)

    # Not tf.function(my_network): tf.function forbids changing a list passed as an argument.
    @tf.function
    def call(x):
        return my_network(x)

    for batch in (2, 3, 4):
        x = tf.random.normal((batch, 5))
        assert_close(call(x), reference(layers, x))
    assert call.experimental_get_tracing_count() >= 2 and len(layers) == 2


class TestErrors:
    def test_not_a_list(self):
        with pytest.raises(TypeError, match="list of a network's elements.*got tuple"):
            fl.ReuseElements(())

    def test_other_type(self):
        layers = [fl.Dense(3)]
        with pytest.raises(TypeError, match=r"element 0 of the list is Dense\(units=3\), but the "
                                            r"network now asks for Flatten\(\)"):
            fl.ReuseElements(layers)(fl.Flatten())

    def test_other_configuration(self):
        layers = []
        network(tf.ones((1, 5)), layers)

        def wider(inputs, layers):
            reuse = fl.ReuseElements(layers)
            return reuse(fl.Dense(7, activation="relu"))(inputs)

        with pytest.raises(ValueError, match=r"element 0 of the list is Dense\(units=6, "
                                             r"activation='relu'\).*Dense\(units=7"):
            wider(tf.ones((1, 5)), layers)

    def test_more_elements_than_stored(self):
        layers = [fl.Dense(6, activation="relu")]
        with pytest.raises(ValueError, match="asks for element 1 .* holds only 1"):
            network(tf.ones((1, 5)), layers)

    def test_sub_list_where_a_layer_is_stored(self):
        layers = []
        network(tf.ones((1, 5)), layers)
        with pytest.raises(TypeError, match="element 0 of the list is Dense.*asks for list"):
            auto_encoder(tf.ones((1, 5)), layers, code_size=2)
