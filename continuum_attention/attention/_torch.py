"""The attention kernels in PyTorch: the ``backend="torch"`` of :class:`AttentionOperator` (CPU or CUDA).

Same primitives and signatures as ``_kernels`` (NumPy arrays in, float64 NumPy arrays out), computed on row
blocks of at most ``BLOCK_ENTRIES`` pairs, so no N x N array is ever formed (each block holds whole rows: its
log-sum-exp is exact, with the row maximum as the shift). ``dtype`` float32 computes scores, exponentials and
sums in float32 (about 1e-6 relative); float64 agrees with the Numba kernels to ~1e-15.

On CUDA the weighted sums of squared-distance metrics (Euclidean in R^d and on the torus, Learned features)
run in one fused Triton kernel (``_triton``; :attr:`TorchKernels.fused`), the rest in blocked torch ops.

The operator's fixed arrays (points, metric, cached S) are moved to the device once and kept there: tensors
are cached by the identity of the NumPy array they came from (a weak reference drops them with it). On the
CPU in float64 ``torch.from_numpy`` shares the memory, so nothing is copied at all.
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from . import _kernels, _triton

BLOCK_ENTRIES = 1 << 22  # pairs per row block (32 MiB of float64 scores)


def import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the learn extra installs it
        raise ImportError("backend='torch' needs PyTorch: pip install continuum-attention[learn]") from exc
    return torch


class TorchKernels(dict):
    """The kernel table of ``_kernels.NUMBA`` / ``NUMPY``, in PyTorch on ``device`` with ``dtype``."""

    def __init__(self, device: str = "cpu", dtype: str = "float64"):
        torch = import_torch()
        super().__init__()
        self.torch, self.device, self.dtype = torch, torch.device(device), getattr(torch, dtype)
        self._cache: dict[int, tuple] = {}
        self.update(sum=self.kernel_sum, lse=self.kernel_lse, displacement=self.kernel_displacement,
                    csr=self.csr_matmul, dense=self.dense_matmul, dense_t=self.dense_tmatmul,
                    csr_scale=_kernels.csr_scale_ref, softmax=self.softmax_sum)
        # the rewrite's cancellation error, c max|a - mean|^2 u, must stay below this (relative, in the exponent)
        self.rewrite_tolerance = 1e-13 if dtype == "float64" else 1e-5
        self.fused = self._fused_path()

    def _fused_path(self) -> str | None:
        """"triton" on CUDA where Triton imports: the fused squared-distance kernel (``_triton``) takes the
        weighted sums of Euclidean metrics, the torus's minimum image included; "triton-interpreted" on the
        CPU under Triton's interpreter (TRITON_INTERPRET=1, the tests); otherwise None (blocked torch ops).
        CONTINUUM_ATTENTION_FUSED=0 in the environment turns it off (benchmarks compare the two paths)."""
        if os.environ.get("CONTINUUM_ATTENTION_FUSED") == "0":
            return None
        if self.device.type == "cuda":
            return "triton" if _triton.available() else None
        if os.environ.get("TRITON_INTERPRET") == "1" and _triton.available():
            return "triton-interpreted"
        return None

    # ------------------------------------------------------------------------------------ transfers
    def tensor(self, a: np.ndarray, *, keep: bool = False, index: bool = False):
        """``a`` on the device (int64 for ``index``); with ``keep`` cached for as long as ``a`` lives."""
        key = (id(a), index)
        if keep and key in self._cache and self._cache[key][0]() is a:
            return self._cache[key][1]
        if index:
            t = self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)
        else:
            t = self.torch.from_numpy(np.ascontiguousarray(a)).to(device=self.device, dtype=self.dtype)
        if keep:
            try:
                ref = weakref.ref(a, lambda _, k=key: self._cache.pop(k, None))
            except TypeError:  # not weak-referenceable: do not cache
                return t
            self._cache[key] = (ref, t)
        return t

    def _out(self, t) -> np.ndarray:
        return t.to(device="cpu", dtype=self.torch.float64).numpy()

    def _blocks(self, na: int, per_row: int):
        step = max(1, BLOCK_ENTRIES // max(per_row, 1))
        for start in range(0, na, step):
            yield slice(start, min(start + step, na))

    # ------------------------------------------------------------------------------------- kernels
    def _geometry(self, family, A, BT, M, use_M, period):
        return (family, self.tensor(A, keep=True), self.tensor(BT, keep=True), self.tensor(M, keep=True), use_M,
                self.tensor(period, keep=True))

    def _scores(self, family, A, BT, M, use_M, period):
        """f(a, b) on a row block, the twin of ``_kernels.score_block``."""
        torch = self.torch
        if family == _kernels.DOT:
            return -(A @ BT)
        D = A[:, None, :] - BT.T[None, :, :]
        on = period > 0
        if bool(on.any()):
            safe = torch.where(on, period, torch.ones_like(period))
            D = torch.where(on, D - period * torch.round(D * (1.0 / safe)), D)  # round half to even, as rint
        if use_M:
            return torch.einsum("abk,km,abm->ab", D, M, D)
        return (D * D).sum(dim=-1)

    def kernel_sum(self, family, A, BT, M, use_M, period, c, r, s, V) -> np.ndarray:
        if self.fused is not None and family == _kernels.SQUARED and not use_M:
            return self._out(_triton.squared_sum(self.torch, self.tensor(A, keep=True), self.tensor(BT, keep=True),
                                                 self.tensor(period, keep=True), float(c), self.tensor(r),
                                                 self.tensor(s), self.tensor(V)))
        g = self._geometry(family, A, BT, M, use_M, period)
        rt, st, Vt = self.tensor(r), self.tensor(s), self.tensor(V)
        out = self.torch.empty((A.shape[0], V.shape[1]), device=self.device, dtype=self.dtype)
        for rows in self._blocks(A.shape[0], BT.shape[1] * A.shape[1]):
            F = self._scores(g[0], g[1][rows], *g[2:])
            out[rows] = self.torch.exp(-c * F - rt[rows, None] - st[None, :]) @ Vt
        return self._out(out)

    def kernel_lse(self, family, A, BT, M, use_M, period, c, s) -> np.ndarray:
        g = self._geometry(family, A, BT, M, use_M, period)
        st = self.tensor(s)
        out = self.torch.empty(A.shape[0], device=self.device, dtype=self.dtype)
        for rows in self._blocks(A.shape[0], BT.shape[1] * A.shape[1]):
            out[rows] = self.torch.logsumexp(-c * self._scores(g[0], g[1][rows], *g[2:]) - st[None, :], dim=1)
        return self._out(out)

    def kernel_displacement(self, family, A, BT, M, use_M, period, X, xperiod, c, r, s) -> np.ndarray:
        torch = self.torch
        g = self._geometry(family, A, BT, M, use_M, period)
        rt, st, Xt, xp = self.tensor(r), self.tensor(s), self.tensor(X, keep=True), self.tensor(xperiod, keep=True)
        dx = X.shape[1]
        out = torch.empty((A.shape[0], dx + 1), device=self.device, dtype=self.dtype)
        on = xp > 0
        safe = torch.where(on, xp, torch.ones_like(xp))
        for rows in self._blocks(A.shape[0], BT.shape[1] * max(A.shape[1], dx)):
            W = torch.exp(-c * self._scores(g[0], g[1][rows], *g[2:]) - rt[rows, None] - st[None, :])
            D = Xt[None, :, :] - Xt[rows, None, :]
            D = torch.where(on, D - xp * torch.round(D * (1.0 / safe)), D)
            out[rows, :dx] = torch.einsum("ab,abk->ak", W, D)
            out[rows, dx] = W.sum(dim=1)
        return self._out(out)

    def softmax_sum(self, family, A, BT, M, use_M, period, c, s, V) -> np.ndarray | None:
        """S V for row normalisation through ``scaled_dot_product_attention``, or None where it does not apply.

        For f = |a - b|^2 (no minimum image, no quadratic form) the exact rewrite
        -c |a - b|^2 = 2c a.b - c |a|^2 - c |b|^2 makes the row term cancel in the softmax, so
        S_ab = softmax_b(2c a.b + beta_b), beta_b = -c |b|^2 - s_b: one SDPA call per row block with a per-key
        additive bias (the fused attention kernels on every device). Coordinates are centred first (f is
        translation invariant); the rewrite's rounding, about c max|a|^2 u, is checked against
        ``rewrite_tolerance`` before it is used.
        """
        torch = self.torch
        if family != _kernels.SQUARED or use_M or bool(np.any(period > 0)):
            return None
        prepared = self._rewrite(A, BT, c)
        if prepared is None:
            return None
        q, k, kk = prepared
        bias = -c * kk - self.tensor(s)
        Vt = self.tensor(V)
        out = torch.empty((A.shape[0], V.shape[1]), device=self.device, dtype=self.dtype)
        for rows in self._blocks(A.shape[0], BT.shape[1]):
            out[rows] = torch.nn.functional.scaled_dot_product_attention(
                q[rows][None], k[None], Vt[None], attn_mask=bias[None, None, :], scale=2.0 * c)[0]
        return self._out(out)

    def _rewrite(self, A, BT, c):
        """(centred queries, centred keys, |k|^2) on the device, or None where the rewrite's rounding is too
        large; prepared once per pair of operator arrays (they are fixed), not once per layer."""
        key = ("rewrite", id(A), id(BT), c)
        hit = self._cache.get(key)
        if hit is not None and hit[0]() is A and hit[1]() is BT:
            return hit[2]
        centre = BT.mean(axis=1)
        radius2 = max(float(np.max(np.sum((A - centre) ** 2, axis=1))),
                      float(np.max(np.sum((BT.T - centre) ** 2, axis=1))))
        u = float(np.finfo(np.float64 if self.dtype == self.torch.float64 else np.float32).eps)
        prepared = None
        if 4.0 * c * radius2 * u <= self.rewrite_tolerance:
            q, k = self.tensor(A - centre), self.tensor(np.ascontiguousarray(BT.T - centre))
            prepared = (q, k, (k * k).sum(dim=1))
        try:
            self._cache[key] = (weakref.ref(A), weakref.ref(BT), prepared)
            weakref.finalize(A, self._cache.pop, key, None)
        except TypeError:  # not weak-referenceable: prepare again next time
            pass
        return prepared

    def csr_matmul(self, indptr, indices, data, V) -> np.ndarray:
        import warnings

        n = indptr.size - 1
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is not
            warnings.simplefilter("ignore", UserWarning)
            S = self.torch.sparse_csr_tensor(self.tensor(indptr, keep=True, index=True),
                                             self.tensor(indices, keep=True, index=True),
                                             self.tensor(data, keep=True), size=(n, V.shape[0]),
                                             check_invariants=False)  # the engine built a valid CSR
            return self._out(S @ self.tensor(V))

    def dense_matmul(self, S, V) -> np.ndarray:
        return self._out(self.tensor(S, keep=True) @ self.tensor(V))

    def dense_tmatmul(self, S, V) -> np.ndarray:
        return self._out(self.tensor(S, keep=True).T @ self.tensor(V))
