"""Import-time checks and build information."""

import pytest

import fusedlayers as fl
from fusedlayers import _loader


def test_build_info_names_versions_and_isa():
    info = fl.build_info()
    assert info["tensorflow_runtime"].startswith("2.21")
    assert info["tensorflow_built_against"].startswith("2.21")
    assert info["kernel_isa"] in ("avx512", "avx2", "portable")
    assert info["bf16_kernel"] in ("amx", "dpbf16", "widen")
    assert isinstance(info["cpu_features"]["avx2"], bool)


def test_other_tensorflow_minor_is_refused_with_instructions():
    with pytest.raises(ImportError, match=r"built against TensorFlow 2\.21\.0.*tensorflow==2\.21\.\*"):
        _loader.check_tensorflow_version(installed="2.20.1", built="2.21.0")
    _loader.check_tensorflow_version(installed="2.21.3", built="2.21.0")  # same minor: fine


def test_unknown_activation_lists_supported_names():
    with pytest.raises(ValueError) as err:
        fl.activations.get("mish")
    for name in fl.activations.NAMES:
        assert name in str(err.value)
