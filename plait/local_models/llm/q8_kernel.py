"""A compiled int8 x int8 matrix product for the logits (``q8_kernel.c``), built on first use.

torch has no grouped int8 kernel for the CPU, so :class:`~plait.local_models.llm.llama_decoder.Int8Linear`
otherwise computes the logits as two int4 matmuls. This kernel does GGUF's Q8_0 layout directly with
AVX-512 VNNI, the way llama.cpp does: for SmolLM2's 49,152 x 576 head it takes about half the CPU
time of the two int4 matmuls (1.05 against 2.2 ms on one core; ``benchmarks/local_generation.py``).

It is compiled with the system's C compiler (``cc``, about a second) into the cache directory, once
per source and flags; where there is no compiler, the CPU lacks AVX-512 VNNI, or
``PLAIT_NATIVE_KERNELS=0`` is set, :func:`load` returns ``None`` and the torch path is used. OpenMP
threads come from the libgomp torch already loaded (same soname), so ``torch.set_num_threads`` applies.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SOURCE = Path(__file__).with_name("q8_kernel.c")
FLAGS = ["-O3", "-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512vnni", "-fopenmp",
         "-shared", "-fPIC"]
NEEDS = {"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512_vnni"}  # /proc/cpuinfo names
_lock = threading.Lock()
_lib: Any = False  # False: not tried yet; None: unavailable


def cpu_supported() -> bool:
    """Whether this CPU has the instructions the kernel is compiled for (read from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return NEEDS <= set(flags)


def build(folder: Path) -> Path:
    """Compile the kernel into ``folder`` (atomically; a finished build is reused) and return its path."""
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = folder / f"q8_kernel-{tag}.so"
    if target.exists():
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc) found")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load() -> Any:
    """The loaded kernel library, or ``None`` where it cannot be used here (see the module docstring)."""
    global _lib
    with _lock:
        if _lib is False:
            _lib = None
            if os.environ.get("PLAIT_NATIVE_KERNELS", "1") != "0" and cpu_supported():
                import torch  # noqa: F401  (its libgomp first, so the kernel shares torch's OpenMP threads)

                from plait.defaults import cache_dir

                try:
                    lib = ctypes.CDLL(str(build(cache_dir() / "kernels")))
                except OSError:
                    return None  # no compiler or a failed build: the torch path
                p, i = ctypes.c_void_p, ctypes.c_int
                lib.q8_matmul.argtypes = [p, p, i, i, i, p, p]
                lib.q8_matmul.restype = ctypes.c_int
                _lib = lib
        return _lib


def q8_matmul(lib: Any, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x @ (q * scale).T`` in float32, for ``q`` int8 (n, k) and ``scale`` float32 (n, k / 32)."""
    import torch

    x = x.to(torch.float32).contiguous()
    m, k = x.shape
    n = q.shape[0]
    if q.dtype != torch.int8 or q.shape != (n, k) or scale.dtype != torch.float32 or scale.shape != (n, k // 32) \
            or not (q.is_contiguous() and scale.is_contiguous()) or k % 32:
        raise ValueError(f"q8_matmul: x {tuple(x.shape)} against int8 {tuple(q.shape)} with float32 scales "
                         f"{tuple(scale.shape)}; k must be a multiple of 32 and the weights contiguous")
    y = torch.empty(m, n, dtype=torch.float32)
    if lib.q8_matmul(x.data_ptr(), y.data_ptr(), m, n, k, q.data_ptr(), scale.data_ptr()) != 0:
        raise MemoryError("q8_matmul could not allocate its activation buffer")
    return y
