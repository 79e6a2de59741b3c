"""GPU benchmark: the fused CUDA kernels against unfused PyTorch (cuBLAS / cuDNN, then
separate bias and activation kernels), timed alternately with CUDA events; prints a
markdown table. Needs a CUDA device, PyTorch and a build with _native_cuda; no
TensorFlow. Run: PYTHONPATH=python python tests/gpu/bench_gpu.py [--quick]"""

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F

from gpu_harness import load_native_cuda

TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TORCH_ACT = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "linear": lambda t: t}


def time_alternately(fused, stock, repeats):
    """Median milliseconds of each, run in turns so clocks and caches treat both alike."""
    for _ in range(3):
        fused(), stock()
    times = {"fused": [], "stock": []}
    for _ in range(repeats):
        for name, fn in (("fused", fused), ("stock", stock)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end))
    return statistics.median(times["fused"]), statistics.median(times["stock"])


def dense_case(native, m, k, n, dtype, activation, backward):
    t = TORCH_DTYPE[dtype]
    x = torch.randn(m, k, device="cuda", dtype=t)
    w = torch.randn(k, n, device="cuda", dtype=t) / k**0.5
    b = torch.randn(n, device="cuda", dtype=t)
    y, z = torch.empty(m, n, device="cuda", dtype=t), torch.empty(m, n, device="cuda", dtype=t)
    stream = torch.cuda.current_stream().cuda_stream
    common = dict(m=m, k=k, n=n, dtype=dtype, activation=activation, stream=stream)

    def fused_forward():
        native.dense_forward(x=x.data_ptr(), kernel=w.data_ptr(), bias=b.data_ptr(),
                             y=y.data_ptr(), z=z.data_ptr(), **common)

    if not backward:
        return fused_forward, lambda: TORCH_ACT[activation](x @ w + b)

    fused_forward()
    dy = torch.randn(m, n, device="cuda", dtype=t)
    dx, dw, db = torch.empty_like(x), torch.empty_like(w), torch.empty_like(b)
    ws_bytes = native.backward_workspace_bytes(rows=m, cols=n, dtype=dtype)
    ws = torch.empty(ws_bytes, device="cuda", dtype=torch.uint8)

    def fused_backward():
        native.dense_backward(dy=dy.data_ptr(), x=x.data_ptr(), kernel=w.data_ptr(),
                              y=y.data_ptr(), z=z.data_ptr(), dx=dx.data_ptr(),
                              dkernel=dw.data_ptr(), dbias=db.data_ptr(), workspace=ws.data_ptr(),
                              workspace_bytes=ws_bytes, **common)

    zt = (x @ w + b).requires_grad_(True)
    yt = TORCH_ACT[activation](zt)

    def stock_backward():
        (dz,) = torch.autograd.grad(yt, zt, dy, retain_graph=True)
        return dz @ w.T, x.T @ dz, dz.sum(0)

    return fused_backward, stock_backward


def conv_case(native, transpose, batch, hw, cin, cout, ksize, stride, dtype, activation, backward):
    t = TORCH_DTYPE[dtype]
    x = torch.randn(batch, hw, hw, cin, device="cuda", dtype=t)
    # Keras layouts: conv2d [kh, kw, in, out]; conv2d_transpose [kh, kw, out, in].
    kshape = (ksize, ksize, cout, cin) if transpose else (ksize, ksize, cin, cout)
    kernel = torch.randn(*kshape, device="cuda", dtype=t) / (ksize * ksize * cin) ** 0.5
    b = torch.randn(cout, device="cuda", dtype=t)
    name = "conv2d_transpose" if transpose else "conv2d"
    attrs = dict(strides=(stride, stride), padding="same")
    y_shape = getattr(native, name + "_output_shape")(x_shape=x.shape, kernel_shape=kshape, **attrs)
    y, z = torch.empty(y_shape, device="cuda", dtype=t), torch.empty(y_shape, device="cuda", dtype=t)
    stream = torch.cuda.current_stream().cuda_stream
    common = dict(x_shape=tuple(x.shape), kernel_shape=kshape, dtype=dtype, activation=activation,
                  stream=stream, **attrs)

    def fused_forward():
        getattr(native, name + "_forward")(x=x.data_ptr(), kernel=kernel.data_ptr(),
                                           bias=b.data_ptr(), y=y.data_ptr(), z=z.data_ptr(),
                                           **common)

    # PyTorch's NCHW-indexed, channels-last-stored equivalents; its weights are
    # [out, in, kh, kw] (conv) and [in, out, kh, kw] (transpose): the same permutation.
    xt = x.permute(0, 3, 1, 2)
    wt = kernel.permute(3, 2, 0, 1).contiguous()
    geometry = (transpose, stride, (ksize - 1) // 2, y_shape, hw, ksize, activation)

    if not backward:
        return fused_forward, lambda: stock_conv(xt, wt, b, *geometry)

    fused_forward()
    dy = torch.randn(y_shape, device="cuda", dtype=t)
    dx, dk, db = torch.empty_like(x), torch.empty_like(kernel), torch.empty_like(b)
    rows = y_shape[0] * y_shape[1] * y_shape[2]
    ws_bytes = native.backward_workspace_bytes(rows=rows, cols=y_shape[3], dtype=dtype)
    ws = torch.empty(ws_bytes, device="cuda", dtype=torch.uint8)

    def fused_backward():
        getattr(native, name + "_backward")(
            dy=dy.data_ptr(), x=x.data_ptr(), kernel=kernel.data_ptr(), y=y.data_ptr(),
            z=z.data_ptr(), dx=dx.data_ptr(), dkernel=dk.data_ptr(), dbias=db.data_ptr(),
            workspace=ws.data_ptr(), workspace_bytes=ws_bytes, **common)

    xg, wg = xt.detach().requires_grad_(True), wt.detach().requires_grad_(True)
    bg = b.detach().requires_grad_(True)
    out = stock_conv(xg, wg, bg, *geometry)
    dyt = dy.permute(0, 3, 1, 2)

    def stock_backward():
        return torch.autograd.grad(out, (xg, wg, bg), dyt, retain_graph=True)

    return fused_backward, stock_backward


def stock_conv(x, w, b, transpose, stride, pad, y_shape, hw, ksize, activation):
    """PyTorch's conv (cuDNN) with its bias, then the activation as a separate kernel."""
    if transpose:
        out = F.conv_transpose2d(x, w, b, stride=stride, padding=pad,
                                 output_padding=y_shape[1] - ((hw - 1) * stride - 2 * pad + ksize))
    else:
        out = F.conv2d(x, w, b, stride=stride, padding=pad)
    return TORCH_ACT[activation](out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    native = load_native_cuda()
    if native is None or not torch.cuda.is_available():
        sys.exit("needs a CUDA device, PyTorch and a build with fusedlayers._native_cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    repeats = 10 if args.quick else args.repeats
    dtypes = ["bfloat16"] if args.quick else ["float32", "float16", "bfloat16"]
    dense_shapes = [(4096, 1024, 1024)] if args.quick else [(4096, 1024, 1024), (16384, 4096, 1024), (256, 512, 512)]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"median of {repeats} alternated runs (ms), TF32 off\n")
    print("| case | dtype | pass | fused ms | unfused ms | unfused / fused |")
    print("|---|---|---|---|---|---|")
    cases = []
    for dtype in dtypes:
        for m, k, n in dense_shapes:
            for activation in ("relu", "gelu"):
                for backward in (False, True):
                    cases.append((f"dense {m}x{k}x{n} {activation}", dtype, backward,
                                  lambda d=dtype, m=m, k=k, n=n, a=activation, bw=backward:
                                  dense_case(native, m, k, n, d, a, bw)))
        for transpose, cin, cout in ((True, 128, 64), (False, 64, 128)):
            label = "conv2d_transpose" if transpose else "conv2d"
            for backward in (False, True):
                cases.append((f"{label} 32x32x32 3x3 s2 {cin}->{cout} gelu", dtype, backward,
                              lambda d=dtype, t=transpose, ci=cin, co=cout, bw=backward:
                              conv_case(native, t, 32, 32, ci, co, 3, 2, d, "gelu", bw)))
    for label, dtype, backward, make in cases:
        fused, stock = make()
        f, s = time_alternately(fused, stock, repeats)
        print(f"| {label} | {dtype} | {'backward' if backward else 'forward'} | {f:.3f} | {s:.3f} | {s / f:.2f} |")


if __name__ == "__main__":
    main()
