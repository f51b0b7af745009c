"""A fused Triton kernel for the squared-distance family, the torus (minimum image) included (issue 11).

    out[a, :] = sum_b exp(-c f(a, b) - r_a - s_b) V[b, :],   f(a, b) = sum_k minimage(A_ak - B_bk)^2

(``_kernels.kernel_sum`` with ``family = SQUARED`` and no quadratic form). One program takes BLOCK_M rows and
walks the columns in blocks of BLOCK_N: scores, weights and their product with V stay on chip, so a layer
reads the points and V once per row block and never forms an N x N array; the minimum image is
``delta - p * rint(delta / p)`` with rint by the 1.5 * 2^52 (float32: 2^23) shift, as in the Numba lanes. The
product with V is a ``tl.dot`` of the weight block (IEEE float32, not TF32, in float32).

Why Triton: it ships with the CUDA builds of PyTorch (nothing more to install on a GPU machine), takes the same
tensors as the rest of the torch backend, and its interpreter (``interpret=True``) runs the same kernel on the
CPU with NumPy (TRITON_INTERPRET=1), which is how CI checks it against the Numba kernels (numba-cuda has no
CPU twin of that kind).
On a GPU, FMA contraction may round ``delta * (1/p) + shift`` once instead of twice: pairs exactly half a
period apart may then take the other image (it does not change f without a quadratic form).

Rows of ``A`` are (na, d), columns are given transposed, ``BT`` (d, nb), as everywhere in the kernels.
"""

from __future__ import annotations

import functools

import numpy as np

BLOCK_M = 64
BLOCK_N = 64


def available() -> bool:
    """True when Triton imports (a CUDA build of PyTorch, or the ``test`` extra)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


try:  # the kernel's source is read at module level: Triton's interpreter patches this module's ``tl``
    import triton.language as tl
except ImportError:  # pragma: no cover - the test extra and CUDA builds of PyTorch have Triton
    tl = None


def _squared_sum(A, BT, PER, IPER, R, S, V, OUT, PARAMS, na, nb, D: tl.constexpr, MP: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, F32: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < na
    c = tl.load(PARAMS)
    shift = tl.load(PARAMS + 1)  # 1.5 * 2^52 (or 2^23) in the arithmetic's own precision
    r = tl.load(R + rows, mask=rmask, other=0.0)
    vcols = tl.arange(0, MP)
    acc = tl.zeros((BLOCK_M, MP), dtype=OUT.dtype.element_ty)
    for start in range(0, nb, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        cmask = cols < nb
        f = tl.zeros((BLOCK_M, BLOCK_N), dtype=OUT.dtype.element_ty)
        for k in tl.static_range(D):
            a = tl.load(A + rows * D + k, mask=rmask, other=0.0)
            b = tl.load(BT + k * nb + cols, mask=cmask, other=0.0)
            dk = a[:, None] - b[None, :]
            # p = 1/p = 0 on an axis without a period: dk - 0 * 0, the difference itself
            dk = dk - tl.load(PER + k) * ((dk * tl.load(IPER + k) + shift) - shift)
            f += dk * dk
        sb = tl.load(S + cols, mask=cmask, other=float("inf"))  # padding columns: weight exactly 0
        w = tl.exp(-c * f - r[:, None] - sb[None, :])
        v = tl.load(V + cols[:, None] * MP + vcols[None, :], mask=cmask[:, None], other=0.0)
        if F32:
            acc += tl.dot(w, v, input_precision="ieee")
        else:
            acc += tl.dot(w, v)
    tl.store(OUT + rows[:, None] * MP + vcols[None, :], acc, mask=rmask[:, None])



@functools.lru_cache(maxsize=1)
def _kernel():
    """The kernel, jit-compiled for the GPU, or interpreted on the CPU (NumPy) when the environment had
    TRITON_INTERPRET=1 before Triton was first imported (Triton's own switch; the tests run it so)."""
    import triton

    return triton.jit(_squared_sum)


def squared_sum(torch, A, BT, period, c: float, r, s, V):
    """The fused sum above on torch tensors of one dtype and device (float32 or float64); returns (na, m).

    ``period`` (d,) holds each axis's period, 0 where there is none. CUDA tensors, or CPU tensors under
    Triton's interpreter (TRITON_INTERPRET=1 in the environment before Triton is imported).
    """
    na, d = A.shape
    nb, m = BT.shape[1], V.shape[1]
    dtype, device = A.dtype, A.device
    f32 = dtype == torch.float32
    mp = max(16, 1 << (m - 1).bit_length())  # tl.dot wants a power of two, at least 16
    Vp = torch.zeros((nb, mp), dtype=dtype, device=device)
    Vp[:, :m] = V
    on = period > 0
    iperiod = torch.where(on, 1.0 / torch.where(on, period, torch.ones_like(period)), torch.zeros_like(period))
    shift = 1.5 * 2.0 ** (23 if f32 else 52)
    params = torch.tensor([c, shift], dtype=dtype, device=device)
    out = torch.empty((na, mp), dtype=dtype, device=device)
    grid = (-(-na // BLOCK_M),)
    _kernel()[grid](A.contiguous(), BT.contiguous(), period.contiguous(), iperiod.contiguous(),
                                   r.contiguous(), s.contiguous(), Vp, out, params, na, nb, D=d, MP=mp,
                                   BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, F32=f32)
    return out[:, :m]


def squared_sum_numpy(A, BT, period, c, r, s, V) -> np.ndarray:
    """NumPy reference of :func:`squared_sum` (the same expression, every pair at once)."""
    D = A[:, None, :] - BT.T[None, :, :]
    on = period > 0
    ip = np.where(on, 1.0 / np.where(on, period, 1.0), 0.0)
    D = D - period * np.rint(D * ip)
    W = np.exp(-c * np.sum(D * D, axis=-1) - r[:, None] - s[None, :])
    return W @ V
