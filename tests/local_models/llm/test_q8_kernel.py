"""The compiled int8 kernel for the logits (plait/local_models/llm/q8_kernel.c) against float maths and the torch path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from plait.local_models.llm import q8_kernel  # noqa: E402
from plait.local_models.llm.linear import GROUP, Int8Linear  # noqa: E402

needs_kernel = pytest.mark.skipif(q8_kernel.load() is None, reason="no C compiler or no AVX-512 VNNI here")


def q8_weights(n: int, k: int) -> torch.Tensor:
    """Weights exactly on a Q8_0 grid: integers -127..127 times one scale per group of 32."""
    q = torch.randint(-127, 128, (n, k // GROUP, GROUP)).float()
    q[..., 0] = 127
    return (q * (torch.rand(n, k // GROUP, 1) * 0.01 + 1e-3)).reshape(n, k)


@needs_kernel
@pytest.mark.parametrize("rows", [1, 3])
def test_kernel_matches_float_maths(rows: int) -> None:
    torch.manual_seed(0)
    n, k = 1000, 576
    w, x = q8_weights(n, k), torch.randn(rows, k)
    layer = Int8Linear(w)
    assert layer.kernel is not None
    got, exact = layer(x.to(torch.bfloat16)), x.to(torch.bfloat16).float() @ w.T
    assert got.shape == (rows, n) and got.dtype == torch.float32
    # the activations are rounded to 8 bits per group of 32 (as llama.cpp does): ~0.5% relative error
    assert (got - exact).norm() / exact.norm() < 0.01
    # each output is computed whole by one thread: the same bits again, and for any number of threads
    assert torch.equal(layer(x.to(torch.bfloat16)), got)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(layer(x.to(torch.bfloat16)), got)
    finally:
        torch.set_num_threads(threads)


@needs_kernel
def test_kernel_agrees_with_the_torch_path_and_refuses_bad_shapes() -> None:
    torch.manual_seed(1)
    w, x = q8_weights(256, 128), torch.randn(2, 128).to(torch.bfloat16)
    fast = Int8Linear(w)
    slow = Int8Linear.__new__(Int8Linear)
    slow.q, slow.scale, slow.kernel = fast.q, fast.scale, None
    import plait.local_models.llm.q8_kernel as mod

    saved, mod._lib = mod._lib, None  # as on a machine where the kernel cannot be built
    try:
        slow._ready(fast.q, fast.scale)
    finally:
        mod._lib = saved
    assert slow.kernel is None and slow.high is not None
    a, b = fast(x), slow(x).float()
    assert (a - b).norm() / b.norm() < 0.01
    with pytest.raises(ValueError, match="multiple of 32"):
        q8_kernel.q8_matmul(fast.kernel, torch.randn(1, 100), fast.q[:, :100].contiguous(), fast.scale)


def test_build_reuses_a_finished_build_and_reports_a_missing_compiler(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not q8_kernel.cpu_supported():
        pytest.skip("no AVX-512 VNNI here")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(OSError):
        q8_kernel.build(tmp_path / "a")
    assert not list((tmp_path / "a").glob("*.so"))  # nothing half-written left behind
    monkeypatch.delenv("CC")
    first = q8_kernel.build(tmp_path / "b")
    stamp = first.stat().st_mtime_ns
    assert q8_kernel.build(tmp_path / "b") == first and first.stat().st_mtime_ns == stamp


def test_switched_off_it_falls_back_to_torch() -> None:
    code = ("import torch; from plait.local_models.llm import q8_kernel; from plait.local_models.llm.linear import Int8Linear;"
            "assert q8_kernel.load() is None; layer = Int8Linear(torch.randn(64, 64));"
            "print(layer.kernel is None, layer(torch.randn(1, 64).to(torch.bfloat16)).dtype)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PLAIT_NATIVE_KERNELS": "0"}).stdout
    assert out.split() == ["True", "torch.bfloat16"]
