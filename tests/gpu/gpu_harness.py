"""Device buffers for the CUDA harness through CuPy or PyTorch, without TensorFlow."""

import glob
import importlib.util
import os

import numpy as np
import pytest

DTYPES = ("float32", "float16", "bfloat16")
ELEMENT_SIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
# Tolerance of a result against the float64 reference, as a fraction of max(1, max|ref|):
# float32 accumulates in a different order, 16-bit types round inputs, dz and outputs.
TOLERANCE = {"float32": 1e-4, "tf32": 5e-3, "float16": 1e-2, "bfloat16": 5e-2}


def load_native_cuda():
    """fusedlayers._native_cuda loaded from its file, so fusedlayers/__init__ (which
    imports TensorFlow) never runs; None when this build has no CUDA module."""
    spec = importlib.util.find_spec("fusedlayers")
    if spec is None:
        return None
    for folder in spec.submodule_search_locations:
        for path in glob.glob(os.path.join(folder, "_native_cuda*.so")):
            module_spec = importlib.util.spec_from_file_location("fusedlayers._native_cuda", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
    return None


def encode(values, dtype):
    """float64 values -> the bytes of `dtype` (bfloat16 rounded to nearest even)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if dtype == "bfloat16":
        bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return bits.astype(np.uint16).view(np.uint8).reshape(-1)
    return values.astype(np.float32 if dtype == "float32" else np.float16).view(np.uint8).reshape(-1)


def decode(raw, dtype, shape):
    """The bytes of `dtype` -> float64 values of `shape`."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if dtype == "bfloat16":
        bits = raw.view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64).reshape(shape)
    host_type = np.float32 if dtype == "float32" else np.float16
    return raw.view(host_type).astype(np.float64).reshape(shape)


def rounded(values, dtype):
    """values as `dtype` stores them, back in float64."""
    return decode(encode(values, dtype), dtype, np.shape(values))


class CupyBackend:
    name = "cupy"

    def __init__(self):
        import cupy

        self.cp = cupy
        cupy.cuda.runtime.getDeviceCount()

    def upload(self, raw):
        return self.cp.asarray(raw)

    def address(self, buffer):
        return buffer.data.ptr

    def download(self, buffer):
        return self.cp.asnumpy(buffer)

    def stream(self):
        return self.cp.cuda.get_current_stream().ptr

    def synchronize(self):
        self.cp.cuda.get_current_stream().synchronize()


class TorchBackend:
    name = "torch"

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.torch = torch

    def upload(self, raw):
        return self.torch.from_numpy(np.array(raw, copy=True)).cuda()

    def address(self, buffer):
        return buffer.data_ptr()

    def download(self, buffer):
        return buffer.cpu().numpy()

    def stream(self):
        return self.torch.cuda.current_stream().cuda_stream

    def synchronize(self):
        self.torch.cuda.synchronize()


def make_backend():
    """CuPy, else PyTorch; raises when neither can reach a device."""
    errors = []
    for backend in (CupyBackend, TorchBackend):
        try:
            return backend()
        except Exception as e:  # noqa: BLE001 - any failure means "not usable here"
            errors.append(f"{backend.name}: {e}")
    raise RuntimeError("; ".join(errors))


class DeviceTensor:
    """A device copy of float64 `values` in `dtype` (or NaN-poisoned, for outputs),
    starting `offset` elements into its allocation so addresses are misaligned."""

    def __init__(self, backend, dtype, shape=None, values=None, offset=1):
        self.backend, self.dtype = backend, dtype
        self.shape = tuple(np.shape(values) if values is not None else shape)
        size = ELEMENT_SIZE[dtype]
        self.offset_bytes = offset * size
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * size
        raw = np.full(self.offset_bytes + self.nbytes, 0xFF, dtype=np.uint8)  # NaN in every dtype
        if values is not None:
            raw[self.offset_bytes:] = encode(values, dtype)
        self.buffer = backend.upload(raw)
        self.ptr = backend.address(self.buffer) + self.offset_bytes

    def to_host(self):
        raw = self.backend.download(self.buffer)[self.offset_bytes:]
        return decode(raw, self.dtype, self.shape)


class Workspace:
    def __init__(self, backend, nbytes):
        self.nbytes = nbytes
        self.buffer = backend.upload(np.full(nbytes, 0xFF, dtype=np.uint8))
        self.ptr = backend.address(self.buffer)


def require_gpu():
    """(native module, backend), or skips the calling test module saying why."""
    native = load_native_cuda()
    if native is None:
        pytest.skip("this build has no fusedlayers._native_cuda (built without nvcc)",
                    allow_module_level=True)
    info = native.device_info()
    if info["device_count"] == 0:
        pytest.skip(f"no CUDA device: {info.get('error', 'none found')}", allow_module_level=True)
    try:
        backend = make_backend()
    except RuntimeError as e:
        pytest.skip(f"no usable CuPy or PyTorch: {e}", allow_module_level=True)
    return native, backend


def assert_close(actual, expected, tolerance):
    """|actual - expected| <= tolerance * max(1, max|expected|), elementwise; NaN fails
    (an output the kernel never wrote keeps its NaN poison)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert not np.isnan(actual).any(), "unwritten (NaN-poisoned) or NaN outputs"
    if actual.size == 0:
        return
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * scale)
