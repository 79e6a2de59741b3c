"""ReuseElements: a list that a network fills on its first run and takes its layers from after."""

from fusedlayers.layer import Layer, same_configuration


class ReuseElements:
    """Wraps a list of a network's elements (layers, or sub-lists for its sub-networks).

        def network(inputs, layers):
            reuse = fl.ReuseElements(layers)
            hidden = reuse(fl.Dense(100, activation="relu"))(inputs)
            return reuse(fl.Dense(10))(hidden)

        my_network = functools.partial(network, layers=[])  # an independent network

    An empty list is being built: each call appends the element it is given and returns
    it. A filled list is being reused: each call returns the stored element at the next
    position, after checking it has the type of the one given and, for layers, the same
    configuration (the given one, never built, is dropped). Passing the same list to two
    calls therefore shares their weights; a parent network composes children by handing
    each a sub-list, `reuse([])`. Keep the list on a tf.Module attribute to track its
    variables and checkpoint it. Under tf.function, compile a function that calls the
    network, not the partial itself: tf.function refuses to see a list argument filled.
    """

    def __init__(self, elements):
        if not isinstance(elements, list):
            raise TypeError(
                f"ReuseElements takes the list of a network's elements (empty to create them), "
                f"got {type(elements).__name__}"
            )
        self._elements = elements
        self._adding = len(elements) == 0
        self._index = 0

    def __call__(self, provided):
        if self._adding:
            self._elements.append(provided)
            # A list tracked by a tf.Module wraps what it stores; hand back the stored form.
            return self._elements[-1]
        if self._index >= len(self._elements):
            raise ValueError(
                f"ReuseElements: the network asks for element {self._index} "
                f"({_describe(provided)}) but its list holds only {len(self._elements)}; a "
                f"filled list must come from a run of the same network"
            )
        existing = self._elements[self._index]
        _check_compatible(self._index, existing, provided)
        self._index += 1
        return existing


def _describe(element):
    return repr(element) if isinstance(element, Layer) else type(element).__name__


def _check_compatible(index, existing, provided):
    if not isinstance(existing, type(provided)):
        raise TypeError(
            f"ReuseElements: element {index} of the list is {_describe(existing)}, but the "
            f"network now asks for {_describe(provided)} there; a filled list must come from "
            f"a run of the same network"
        )
    if isinstance(provided, Layer) and not same_configuration(existing, provided):
        raise ValueError(
            f"ReuseElements: element {index} of the list is {existing!r}, but the network now "
            f"asks for {provided!r} there; a filled list must come from a run of the same "
            f"network"
        )

