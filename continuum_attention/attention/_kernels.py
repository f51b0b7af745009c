"""Fused attention kernels (Numba) and their NumPy references, side by side (DESIGN.md, "Kernels").

Every kernel evaluates, for a pair (a, b) of a row set A and a column set B, a score ``f(a, b)`` of one of two
families, then the weight ``w_ab = exp(-c f(a, b) - r_a - s_b)`` with ``c = 1 / (2 eps)``, a row shift
``r`` (the log-normaliser) and a column shift ``s`` (the normalisation's column potential, see
``operator.py``), and accumulates in one pass:

* ``kernel_sum``:   out[a, :] = sum_b w_ab V[b, :]                         (the one primitive: K V)
* ``kernel_lse``:   out[a]    = log sum_b exp(-c f(a, b) - s_b)            (shifted by the row maximum)
* ``kernel_displacement``: out[a, :d] = sum_b w_ab minimage(X_b - X_a), out[a, d] = sum_b w_ab (tokens)
* ``csr_matmul``:   out = S V for S in CSR form (truncated mode)
* ``cell_rows_sum``: the truncated kernel's weighted sums at a few rows, from a grid of cells (O(N + rows k))

Families (``family`` argument):

* ``SQUARED = 0``: f = |D|^2, or D^T M D when ``use_M``, with D = A_a - B_b reduced to the minimum image on
  axes with ``period[k] > 0``. Covers Euclidean, Mahalanobis (Cholesky-transformed coordinates off a torus,
  the quadratic form with minimum image on it) and Learned (Euclidean on precomputed features phi(x)).
* ``DOT = 1``: f = -A_a . B_b with A = queries x Q^T, B = keys x K^T.

Two implementations, chosen by ``kernel_sum`` / ``kernel_lse`` / ``kernel_displacement``:

* **lanes** (d <= 8 coordinates and m <= 8 value columns, the common case): parallel over rows, each row's
  columns in blocks of 8; a pair's score, its exponential (``fast_exp``, a vectorisable Cody-Waite/Taylor
  routine) and its contribution stay in registers, one AVX-512 vector of 8 columns at a time. d, m, the family
  and the flags are compile-time constants (one cached specialisation each), so the coordinate loops unroll.
  Measured in ``benchmarks/kernel_bench.py`` against a plain single-pass loop with ``np.exp``.
* **tiles** (wider d or m): parallel over chunks of rows, serial inner loop over columns in tiles of
  ``_TILE`` columns: the exponents of a tile are computed in a vectorisable loop over columns (column
  coordinates passed transposed, ``BT`` of shape (d, Nb)), then exponentiated, then accumulated.

Every output entry is summed in a fixed order (8 lane partial sums reduced in a fixed order, or the tile
order), so results are bitwise reproducible run to run and independent of the thread count. The references
work on row blocks of ``_BLOCK_ENTRIES`` pairs at most, so they too use O(N block) memory, never N x N.
Kernels assume validated, C-contiguous float64 input (the operator validates at the boundary).
"""

from __future__ import annotations

import math
import mmap

import numba
import numpy as np
from numba import literally, njit, prange, types
from numba.extending import intrinsic

SQUARED = 0
DOT = 1

# Weights below exp(_CLAMP) ~ 1e-304 are set to exactly 0: they are < 1e-300 relative to any row sum
# (every row holds a weight of order 1), and exp near its underflow (and arithmetic on subnormals) is 10x
# slower. The cut is branch-free (a select), so random point order costs no branch mispredictions.
_CLAMP = -700.0
_TILE = 2048  # columns per tile: the exponent buffer stays in L1/L2
_BLOCK_ENTRIES = 1 << 21  # pairs per NumPy reference block (16 MiB per float64 temporary)


# ----------------------------------------------------------------------------------------------- Numba
# Minimum image everywhere (Numba, NumPy references, truncated scores, Domain.difference): delta - p rint(delta / p)
# with rint = round half to even, evaluated as delta * (1 / p), so that every path picks the same image even for
# pairs exactly half a period apart (where the image changes f for a Mahalanobis metric with cross terms).
@njit(cache=True, inline="always")
def _min_image(delta: float, period: float) -> float:
    if period > 0.0:
        return delta - period * ((delta * (1.0 / period) + _MAGIC) - _MAGIC)
    return delta


@njit(cache=True)
def _exponents(family, A, BT, M, use_M, period, c, a, b0, b1, ra, s, D, buf):
    """buf[:b1-b0] = -c f(a, b) - ra - s[b] for the column tile b0 <= b < b1 (loops vectorise over b)."""
    d, n = A.shape[1], b1 - b0
    for b in range(n):
        buf[b] = 0.0
    if family == DOT:
        for k in range(d):
            ak = A[a, k]
            for b in range(n):
                buf[b] += ak * BT[k, b0 + b]
        for b in range(n):
            buf[b] = c * buf[b] - ra - s[b0 + b]
        return
    for k in range(d):  # minimum-image differences, axis by axis
        ak, p = A[a, k], period[k]
        if p > 0.0:
            ip = 1.0 / p
            for b in range(n):
                dk = ak - BT[k, b0 + b]
                D[k, b] = dk - p * ((dk * ip + _MAGIC) - _MAGIC)  # round to nearest, vectorisable
        else:
            for b in range(n):
                D[k, b] = ak - BT[k, b0 + b]
    if use_M:
        for k in range(d):
            for m in range(d):
                mkm = M[k, m]
                for b in range(n):
                    buf[b] += mkm * D[k, b] * D[m, b]
    else:
        for k in range(d):
            for b in range(n):
                buf[b] += D[k, b] * D[k, b]
    for b in range(n):
        buf[b] = -c * buf[b] - ra - s[b0 + b]


# exp by Cody-Waite range reduction t = k ln2 + r, |r| <= ln2/2, a degree-12 Taylor polynomial (truncation
# error < 2e-16 relative) and 2^k assembled from bits, branch-free, so that LLVM vectorises the loops that call
# it: libm's exp is a scalar call (~10 ns here), this is ~1 ns per weight.
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490  # few significant bits: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(13))


@intrinsic
def _bits_as_float(typingctx, x):
    """The float64 whose bits are the int64 x (a free register move, unlike a view through memory)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


@intrinsic
def _float_as_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))
    return types.int64(types.float64), codegen


@njit(cache=True, inline="always")
def fast_exp(x):
    """exp(x) for x > _CLAMP, else 0 (3.1e-16 relative against np.exp); NaN gives 0 (the final select).

    2^k is assembled by a bit cast in registers (not a view through memory), so a loop calling it vectorises.
    """
    t = min(max(x, _CLAMP), -_CLAMP)
    y = t * _LOG2E + _MAGIC
    k = y - _MAGIC
    r = (t - k * _LN2_HI) - k * _LN2_LO
    p = _INV_FACT[12]
    for i in range(11, -1, -1):
        p = p * r + _INV_FACT[i]
    return p * _bits_as_float(_float_as_bits(y + 1023.0) << 52) if x > _CLAMP else 0.0


@njit(cache=True, inline="always")
def _weights(buf, n):
    """buf[b] <- exp(buf[b]) for buf[b] > _CLAMP, else 0: ``fast_exp`` over a tile (the loop vectorises)."""
    for b in range(n):
        buf[b] = fast_exp(buf[b])


@njit(cache=True)
def _chunks(na):
    """Row ranges for the parallel loop: enough chunks to balance, each with its own scratch buffers."""
    nchunk = min(na, 64)
    return nchunk, (na + nchunk - 1) // nchunk


@njit(parallel=True, cache=True)
def _tiled_sum(family, A, BT, M, use_M, period, c, r, s, V):  # pragma: no cover - compiled
    na, nb, m, d = A.shape[0], BT.shape[1], V.shape[1], A.shape[1]
    out = np.zeros((na, m))
    nchunk, size = _chunks(na)
    for chunk in prange(nchunk):
        buf, D = np.empty(_TILE), np.empty((d, _TILE))
        for a in range(chunk * size, min(na, (chunk + 1) * size)):
            for b0 in range(0, nb, _TILE):
                n = min(_TILE, nb - b0)
                _exponents(family, A, BT, M, use_M, period, c, a, b0, b0 + n, r[a], s, D, buf)
                _weights(buf, n)
                for j in range(m):
                    acc = 0.0
                    for b in range(n):
                        acc += buf[b] * V[b0 + b, j]
                    out[a, j] += acc
    return out


@njit(parallel=True, cache=True)
def _tiled_lse(family, A, BT, M, use_M, period, c, s):  # pragma: no cover - compiled
    na, nb, d = A.shape[0], BT.shape[1], A.shape[1]
    out = np.empty(na)
    nchunk, size = _chunks(na)
    for chunk in prange(nchunk):
        buf, D = np.empty(_TILE), np.empty((d, _TILE))
        for a in range(chunk * size, min(na, (chunk + 1) * size)):
            top, acc = -np.inf, 0.0
            for b0 in range(0, nb, _TILE):
                n = min(_TILE, nb - b0)
                _exponents(family, A, BT, M, use_M, period, c, a, b0, b0 + n, 0.0, s, D, buf)
                tile_top = buf[0]
                for b in range(n):
                    tile_top = max(tile_top, buf[b])
                if tile_top > top:  # running max moved: rescale what was summed so far (exp(-inf) = 0)
                    acc *= math.exp(top - tile_top)
                    top = tile_top
                for b in range(n):
                    buf[b] -= top
                _weights(buf, n)
                for b in range(n):
                    acc += buf[b]
            out[a] = top + math.log(acc)
    return out


@njit(parallel=True, cache=True)
def _tiled_displacement(family, A, BT, M, use_M, period, X, xperiod, c, r, s):  # pragma: no cover
    na, nb, d, dx = A.shape[0], BT.shape[1], A.shape[1], X.shape[1]
    out = np.zeros((na, dx + 1))
    nchunk, size = _chunks(na)
    for chunk in prange(nchunk):
        buf, D = np.empty(_TILE), np.empty((d, _TILE))
        for a in range(chunk * size, min(na, (chunk + 1) * size)):
            for b0 in range(0, nb, _TILE):
                n = min(_TILE, nb - b0)
                _exponents(family, A, BT, M, use_M, period, c, a, b0, b0 + n, r[a], s, D, buf)
                _weights(buf, n)
                for k in range(dx):
                    acc = 0.0
                    for b in range(n):
                        acc += buf[b] * _min_image(X[b0 + b, k] - X[a, k], xperiod[k])
                    out[a, k] += acc
                total = 0.0
                for b in range(n):
                    total += buf[b]
                out[a, dx] += total
    return out


# ------------------------------------------------------------------------ fused lane kernels (d <= 8)
# For few coordinates the tiled kernels above are bound by their passes over the tile buffers, not by
# arithmetic. These kernels compute a pair's score, its exponential and its contribution in registers, eight
# columns at a time (one AVX-512 vector of float64), each column block b..b+7 accumulated in eight partial sums
# (lane j holds the columns = j mod 8), reduced in a fixed order at the end of the row: the sums depend neither on
# the thread count nor on the run. The dimension d is a compile-time constant (``literally``), so the loops over
# coordinates unroll and only the lane loops remain; one specialisation is compiled (and cached) per d.
# Columns are padded to a multiple of 8 with s = +inf, whose weight is exactly 0.
LANES = 8
LANE_MAX_DIM = 8  # above this, the unrolled coordinate loops stop paying: the tiled kernels take over


@njit(cache=True, inline="always")
def _lane_diff(ak, bk, wrap, p, ip):
    """Minimum image of ak - bk when ``wrap`` (p = ip = 0 on a non-periodic axis returns the difference exactly)."""
    dk = ak - bk
    if wrap:
        dk = dk - p * ((dk * ip + _MAGIC) - _MAGIC)
    return dk


@njit(cache=True, inline="always")
def _lane_score(family, A, BT, M, use_M, wrap, period, iperiod, a, b, d):
    """f(a, b) as one scalar expression: loops over the d coordinates only (d, family, use_M, wrap constant)."""
    q = 0.0
    if family == DOT:
        for k in range(d):
            q -= A[a, k] * BT[k, b]
    elif use_M:
        for k in range(d):
            dk = _lane_diff(A[a, k], BT[k, b], wrap, period[k], iperiod[k])
            for m in range(d):
                q += M[k, m] * dk * _lane_diff(A[a, m], BT[m, b], wrap, period[m], iperiod[m])
    else:
        for k in range(d):
            dk = _lane_diff(A[a, k], BT[k, b], wrap, period[k], iperiod[k])
            q += dk * dk
    return q


@njit(cache=True, inline="always")
def _reduce_lanes(acc, out, a):
    """out[a, col] = the sum of the LANES partial sums of acc[col], in a fixed order (inlined in the kernels)."""
    for col in range(acc.shape[0]):
        total = 0.0
        for j in range(LANES):
            total += acc[col, j]
        out[a, col] = total


@njit(parallel=True, cache=True)
def _lane_sum(family, A, BT, M, use_M, wrap, period, iperiod, c, r, s, VT, d, m):  # pragma: no cover - compiled
    na, nblocks = A.shape[0], BT.shape[1] // LANES
    out = np.zeros((na, m))
    for a in prange(na):
        ra, acc = r[a], np.zeros((m, LANES))
        for blk in range(nblocks):  # an exact block count: with range(0, nb, 8) LLVM leaves the lanes scalar
            b = blk * LANES
            for j in range(LANES):
                w = fast_exp(-c * _lane_score(family, A, BT, M, use_M, wrap, period, iperiod, a, b + j, d)
                             - ra - s[b + j])
                for col in range(m):
                    acc[col, j] += w * VT[col, b + j]
        _reduce_lanes(acc, out, a)
    return out


@njit(parallel=True, cache=True)
def _lane_lse(family, A, BT, M, use_M, wrap, period, iperiod, c, s, d):  # pragma: no cover - compiled
    """Two passes a row: the exact maximum e* of the exponents (lane maxima), then log sum exp(e - e*) + e*.

    Computing each score twice is cheaper than an online rescaling, whose per-pair select does not vectorise.
    """
    na, nblocks = A.shape[0], BT.shape[1] // LANES
    out = np.empty(na)
    for a in prange(na):
        top = np.full(LANES, -np.inf)
        for blk in range(nblocks):
            b = blk * LANES
            for j in range(LANES):
                e = -c * _lane_score(family, A, BT, M, use_M, wrap, period, iperiod, a, b + j, d) - s[b + j]
                top[j] = max(top[j], e)
        peak = top[0]
        for j in range(1, LANES):
            peak = max(peak, top[j])
        if peak == -np.inf:  # every weight is 0 (s = +inf everywhere, or c f = inf): the sum is 0
            out[a] = -np.inf
            continue
        acc = np.zeros(LANES)
        for blk in range(nblocks):
            b = blk * LANES
            for j in range(LANES):
                e = -c * _lane_score(family, A, BT, M, use_M, wrap, period, iperiod, a, b + j, d) - s[b + j]
                acc[j] += fast_exp(e - peak)
        total = 0.0
        for j in range(LANES):
            total += acc[j]
        out[a] = peak + math.log(total)
    return out


@njit(parallel=True, cache=True)
def _lane_displacement(family, A, BT, M, use_M, wrap, period, iperiod, XT, xwrap, xperiod, ixperiod, c, r, s,
                       d, dx):  # pragma: no cover - compiled
    na, nblocks = A.shape[0], BT.shape[1] // LANES
    out = np.zeros((na, dx + 1))
    for a in prange(na):
        ra, acc = r[a], np.zeros((dx + 1, LANES))
        for blk in range(nblocks):
            b = blk * LANES
            for j in range(LANES):
                w = fast_exp(-c * _lane_score(family, A, BT, M, use_M, wrap, period, iperiod, a, b + j, d)
                             - ra - s[b + j])
                for k in range(dx):
                    acc[k, j] += w * _lane_diff(XT[k, b + j], XT[k, a], xwrap, xperiod[k], ixperiod[k])
                acc[dx, j] += w
        _reduce_lanes(acc, out, a)
    return out


# Compile-time constants: the dimension d, the number of value columns m, the family and the two flags, so the
# coordinate and column loops unroll and the lane loop vectorises. One specialisation each, cached on disk.
@njit(cache=True)
def _lane_sum_literal(family, A, BT, M, use_M, wrap, period, iperiod, c, r, s, VT, d, m):
    return _lane_sum(literally(family), A, BT, M, literally(use_M), literally(wrap), period, iperiod, c, r, s, VT,
                     literally(d), literally(m))


@njit(cache=True)
def _lane_lse_literal(family, A, BT, M, use_M, wrap, period, iperiod, c, s, d):
    return _lane_lse(literally(family), A, BT, M, literally(use_M), literally(wrap), period, iperiod, c, s,
                     literally(d))


@njit(cache=True)
def _lane_displacement_literal(family, A, BT, M, use_M, wrap, period, iperiod, XT, xwrap, xperiod, ixperiod, c, r,
                               s, d, dx):
    return _lane_displacement(literally(family), A, BT, M, literally(use_M), literally(wrap), period, iperiod, XT,
                              literally(xwrap), xperiod, ixperiod, c, r, s, literally(d), literally(dx))


def _call_literal(dispatcher, literal: tuple, *args):
    """``dispatcher(*args)`` with the arguments at positions ``literal`` compiled as constants (``literally``),
    calling the compiled specialisation directly once it exists.

    Numba dispatches a call whose compiled signature holds literal types by retrying: it types the plain
    arguments, raises and catches ``ForceLiteralArg``, and only then finds the specialisation. The caught
    exception's traceback keeps the calling frames, and with them every array they hold, alive until the cyclic
    garbage collector runs: a sweep of operators on 10^7 points grew by the size of its arrays at every call and
    ran out of memory. The first call of each signature still takes that path (it compiles, or loads the cache).
    """
    sig = tuple(types.literal(a) if i in literal else numba.typeof(a) for i, a in enumerate(args))
    compiled = dispatcher.overloads.get(sig)
    if compiled is None:
        return dispatcher(*args)
    return compiled.entry_point(*args)


# Widths the lane kernels are compiled for: d and m are padded up to the next one with zero coordinates (which
# add exact zeros to every score) and zero value columns, so that a handful of specialisations cover d, m <= 8.
_LANE_WIDTHS = (1, 2, 3, 4, 8)


def _lane_width(n: int) -> int:
    return next(w for w in _LANE_WIDTHS if w >= n)


def _pad(X: np.ndarray, rows: int, cols: int, fill: float = 0.0) -> np.ndarray:
    out = np.full((rows, cols), fill)
    out[: X.shape[0], : X.shape[1]] = X
    return out


def _lane_inputs(family, A, BT, M, use_M, period, s, *values):
    """Padded (A, B^T, M, flags and periods, s, values^T): columns to a multiple of LANES with s = +inf (weight
    exactly 0), coordinates to a lane width with zeros; each values array (N, k) becomes (width(k), N padded).

    The quadratic form always takes the wrapping path (exact on non-periodic axes), one specialisation fewer.
    """
    d, nb = _lane_width(A.shape[1]), BT.shape[1]
    nbp = -(-nb // LANES) * LANES
    on = period > 0
    per = np.where(on, period, 0.0)
    geometry = (int(family), _pad(A, A.shape[0], d), _pad(BT, d, nbp), _pad(M, d, d), bool(use_M),
                (bool(on.any()) or bool(use_M)) and family != DOT, _pad(per[None], 1, d)[0],
                _pad(np.where(on, 1.0 / np.where(on, period, 1.0), 0.0)[None], 1, d)[0])
    sp = np.full(nbp, np.inf)
    sp[:nb] = s
    return geometry, sp, d, [_pad(V.T, _lane_width(V.shape[1]), nbp) for V in values]


def kernel_sum(family, A, BT, M, use_M, period, c, r, s, V) -> np.ndarray:
    """out[a, :] = sum_b exp(-c f(a, b) - r_a - s_b) V[b, :]: fused lanes for d, m <= 8, else the tiles."""
    if A.shape[0] == 0 or max(A.shape[1], V.shape[1]) > LANE_MAX_DIM:
        return _tiled_sum(family, A, BT, M, use_M, period, c, r, s, V)
    geometry, sp, d, (VTp,) = _lane_inputs(family, A, BT, M, use_M, period, s, V)
    out = _call_literal(_lane_sum_literal, (0, 4, 5, 12, 13), *geometry, float(c), r, sp, VTp, d, VTp.shape[0])
    return out[:, : V.shape[1]]


def kernel_lse(family, A, BT, M, use_M, period, c, s) -> np.ndarray:
    """out[a] = log sum_b exp(-c f(a, b) - s_b), shifted by the exact row maximum."""
    if A.shape[0] == 0 or A.shape[1] > LANE_MAX_DIM:
        return _tiled_lse(family, A, BT, M, use_M, period, c, s)
    geometry, sp, d, _ = _lane_inputs(family, A, BT, M, use_M, period, s)
    return _call_literal(_lane_lse_literal, (0, 4, 5, 10), *geometry, float(c), sp, d)


def kernel_displacement(family, A, BT, M, use_M, period, X, xperiod, c, r, s) -> np.ndarray:
    """out[a, :dx] = sum_b w_ab minimage(X_b - X_a), out[a, dx] = sum_b w_ab (rows and columns: the same points)."""
    dx = X.shape[1]
    if A.shape[0] == 0 or max(A.shape[1], dx) > LANE_MAX_DIM or A.shape[0] != X.shape[0]:
        return _tiled_displacement(family, A, BT, M, use_M, period, X, xperiod, c, r, s)
    geometry, sp, d, (XTp,) = _lane_inputs(family, A, BT, M, use_M, period, s, X)
    on = xperiod > 0
    xw = XTp.shape[0]
    xper = _pad(np.where(on, xperiod, 0.0)[None], 1, xw)[0]
    ixper = _pad(np.where(on, 1.0 / np.where(on, xperiod, 1.0), 0.0)[None], 1, xw)[0]
    out = _call_literal(_lane_displacement_literal, (0, 4, 5, 9, 15, 16), *geometry, XTp, bool(on.any()), xper, ixper,
                        float(c), r, sp, d, xw)
    return np.concatenate([out[:, :dx], out[:, xw:]], axis=1)


@njit(parallel=True, cache=True)
def csr_matmul(indptr, indices, data, V):  # pragma: no cover - compiled
    n, m = indptr.size - 1, V.shape[1]
    out = np.zeros((n, m))
    for a in prange(n):
        for j in range(m):  # one accumulator in a register a column: the same sum, in the same order
            acc = 0.0
            for p in range(indptr[a], indptr[a + 1]):
                acc += data[p] * V[indices[p], j]
            out[a, j] = acc
    return out


_COL_BLOCK = 256  # columns of S per task in dense_tmatmul: a fixed partition, so sums never depend on threads


@njit(parallel=True, cache=True)
def dense_matmul(S, V):  # pragma: no cover - compiled
    """out = S V for a cached dense S (N, N): each row summed in column order (bitwise thread-independent)."""
    n, nb, m = S.shape[0], S.shape[1], V.shape[1]
    out = np.zeros((n, m))
    for a in prange(n):
        for j in range(m):
            # eight partial sums in a fixed order (vectorisable, and the same whatever the thread count)
            acc = np.zeros(8)
            stop = nb - nb % 8
            for b in range(0, stop, 8):
                for k in range(8):
                    acc[k] += S[a, b + k] * V[b + k, j]
            total = 0.0
            for k in range(8):
                total += acc[k]
            for b in range(stop, nb):
                total += S[a, b] * V[b, j]
            out[a, j] = total
    return out


@njit(parallel=True, cache=True)
def dense_tmatmul(S, V):  # pragma: no cover - compiled
    """out = S^T V: column blocks in parallel, rows of S streamed in order inside each (contiguous reads)."""
    n, m = S.shape[1], V.shape[1]
    out = np.zeros((n, m))
    nblocks = (n + _COL_BLOCK - 1) // _COL_BLOCK
    for blk in prange(nblocks):
        b0 = blk * _COL_BLOCK
        b1 = min(b0 + _COL_BLOCK, n)
        for a in range(S.shape[0]):
            for j in range(m):
                v = V[a, j]
                for b in range(b0, b1):
                    out[b, j] += S[a, b] * v
    return out


# ------------------------------------------------------------------ neighbour search on a grid of cells
# Points (N, m), m <= 3, binned into cells of side >= r; each point's neighbours within r lie in the 3^m cells
# around its own. Two parallel passes over the points (count, then fill) write CSR directly: no pair list,
# no sort of all pairs, memory O(nnz) for the result only. Columns of a row come in a fixed order (by
# neighbour cell, then by position in the cell), not sorted: the sums never depend on the thread count.
MAX_CELL_DIM = 3


@njit(cache=True)
def _cell_of(z, lo, width, ncell, periodic):
    m = z.size
    idx = 0
    for k in range(m):
        c = int((z[k] - lo[k]) / width[k])
        if c < 0:
            c = 0
        if c >= ncell[k]:
            c = ncell[k] - 1
        idx = idx * ncell[k] + c
    return idx


@njit(cache=True)
def _cell_index(Z, lo, width, ncell, periodic):
    n = Z.shape[0]
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = _cell_of(Z[i], lo, width, ncell, periodic)
    return out


@njit(cache=True, inline="always")
def _wrapped(q, n, period, periodic):
    """Neighbour cell q of an axis of n cells: (cell, shift to add to differences, exists?).

    A cell past either end of a periodic axis is the one at the other end, one period away: adding that
    shift to a difference is its minimum image (cells are >= r wide and r < period / 3)."""
    if 0 <= q < n:
        return q, 0.0, True
    if not periodic:
        return q, 0.0, False
    return (q + n) % n, (period if q < 0 else -period), True


@njit(cache=True)
def _neighbour_ranges(z, lo, width, ncell, box, periodic, start, ranges):
    """The candidate ranges of a point z (3 coordinates): rows (p0, p1, shift0, shift1, shift2) of ``ranges``.

    Points are stored in cell order and cells are numbered (q0 n1 + q1) n2 + q2, so the three cells along the
    last axis are one contiguous range of points unless one of them wraps: at most 9 ranges in the interior.
    """
    n0, n1, n2 = ncell[0], ncell[1], ncell[2]
    c0 = min(max(int((z[0] - lo[0]) / width[0]), 0), n0 - 1)
    c1 = min(max(int((z[1] - lo[1]) / width[1]), 0), n1 - 1)
    c2 = min(max(int((z[2] - lo[2]) / width[2]), 0), n2 - 1)
    count = 0
    for o0 in range(-1, 2):
        q0, s0, ok0 = _wrapped(c0 + o0, n0, box[0], periodic[0])
        if not ok0 or (o0 != 0 and n0 == 1):
            continue
        for o1 in range(-1, 2):
            q1, s1, ok1 = _wrapped(c1 + o1, n1, box[1], periodic[1])
            if not ok1 or (o1 != 0 and n1 == 1):
                continue
            base = (q0 * n1 + q1) * n2
            if 1 <= c2 <= n2 - 2 or (n2 == 1 and c2 == 0):  # the whole run along the last axis, unshifted
                lo2, hi2 = (c2 - 1, c2 + 1) if n2 > 1 else (0, 0)
                ranges[count, 0], ranges[count, 1] = start[base + lo2], start[base + hi2 + 1]
                ranges[count, 2], ranges[count, 3], ranges[count, 4] = s0, s1, 0.0
                count += 1
                continue
            for o2 in range(-1, 2):
                q2, s2, ok2 = _wrapped(c2 + o2, n2, box[2], periodic[2])
                if not ok2 or (o2 != 0 and n2 == 1):
                    continue
                ranges[count, 0], ranges[count, 1] = start[base + q2], start[base + q2 + 1]
                ranges[count, 2], ranges[count, 3], ranges[count, 4] = s0, s1, s2
                count += 1
    return count


@njit(cache=True, inline="always")
def _squared_distance(Zs, p, z, s0, s1, s2):
    d = (z[0] - Zs[p, 0]) + s0
    d2 = d * d
    d = (z[1] - Zs[p, 1]) + s1
    d2 += d * d
    d = (z[2] - Zs[p, 2]) + s2
    return d2 + d * d


@njit(parallel=True, cache=True)
def _cell_count(Zs, start, lo, width, ncell, box, periodic, r2, counts):  # pragma: no cover - compiled
    """counts[row] = number of points within sqrt(r2) of Zs[row] (branch-free inner loop)."""
    n = Zs.shape[0]
    nchunk, size = _chunks(n)
    for chunk in prange(nchunk):
        ranges = np.empty((27, 5))
        for row in range(chunk * size, min(n, (chunk + 1) * size)):
            z = Zs[row]
            total = 0
            for t in range(_neighbour_ranges(z, lo, width, ncell, box, periodic, start, ranges)):
                s0, s1, s2 = ranges[t, 2], ranges[t, 3], ranges[t, 4]
                for p in range(int(ranges[t, 0]), int(ranges[t, 1])):
                    total += _squared_distance(Zs, p, z, s0, s1, s2) <= r2
            counts[row] = total


@njit(parallel=True, cache=True)
def _cell_fill(Zs, start, lo, width, ncell, box, periodic, r2, indptr, indices, dist2):  # pragma: no cover
    """Write each row's neighbours (in cell order) at indptr[row]: every candidate is written at the next free
    slot, which advances only when it is kept (no branch to mispredict); the row stops at its last kept
    neighbour (the count pass said how many), so no write ever leaves the row's own slots."""
    n = Zs.shape[0]
    nchunk, size = _chunks(n)
    for chunk in prange(nchunk):
        ranges = np.empty((27, 5))
        for row in range(chunk * size, min(n, (chunk + 1) * size)):
            z = Zs[row]
            pos, end = indptr[row], indptr[row + 1]
            for t in range(_neighbour_ranges(z, lo, width, ncell, box, periodic, start, ranges)):
                if pos == end:
                    break
                s0, s1, s2 = ranges[t, 2], ranges[t, 3], ranges[t, 4]
                for p in range(int(ranges[t, 0]), int(ranges[t, 1])):
                    d2 = _squared_distance(Zs, p, z, s0, s1, s2)
                    indices[pos] = p
                    dist2[pos] = d2
                    pos += d2 <= r2
                    if pos == end:
                        break


@njit(parallel=True, cache=True)
def probe_counts(Z, rows, box, periodic, r2):  # pragma: no cover - compiled
    """Number of points within sqrt(r2) of each Z[rows[t]] (brute force: O(len(rows) N))."""
    n, m = Z.shape
    out = np.zeros(rows.size, np.int64)
    for t in prange(rows.size):
        zi = Z[rows[t]]
        count = 0
        for j in range(n):
            d2 = 0.0
            for k in range(m):
                dk = zi[k] - Z[j, k]
                if periodic:
                    dk -= box[k] * ((dk * (1.0 / box[k]) + _MAGIC) - _MAGIC)
                d2 += dk * dk
            if d2 <= r2:
                count += 1
        out[t] = count
    return out


_MMAP_MIN_BYTES = 1 << 26


def fresh_array(n: int, dtype) -> np.ndarray:
    """An uninitialised array of n items; from 64 MiB on, backed by its own anonymous mmap (4 KiB pages).

    NumPy asks for transparent huge pages on large arrays; where the kernel must compact memory to find them,
    the first touch of the CSR arrays took 3.6-3.9 s per 1.2 GB here (system time), against 0.6-1.4 s with
    plain pages (measured in fresh processes). The pages go back with the array.
    """
    dtype = np.dtype(dtype)
    nbytes = int(n) * dtype.itemsize
    if nbytes < _MMAP_MIN_BYTES:
        return np.empty(n, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype)


@njit(cache=True)
def _counting_order(cells, ncells):  # pragma: no cover - compiled
    """The stable sort of points by cell (a counting sort, O(N + cells)) and each cell's first position."""
    start = np.zeros(ncells + 1, np.int64)
    for i in range(cells.size):
        start[cells[i] + 1] += 1
    for q in range(ncells):
        start[q + 1] += start[q]
    fill = start[:-1].copy()
    order = np.empty(cells.size, np.int64)
    for i in range(cells.size):
        q = cells[i]
        order[fill[q]] = i
        fill[q] += 1
    return order, start


class CellGrid:
    """Points (N, m <= 3) binned into cells of side >= ``width_min``, three axes always (the given ones last).

    ``Z3`` are the padded coordinates (wrapped into [0, L) on a periodic box) in the points' own order; the
    points in cell order are ``Z3[order]``, and the points of cell q are positions start[q]:start[q + 1] of
    that order. A padded axis has one cell and zero coordinates, which add exact zeros to every distance.
    """

    def __init__(self, Z: np.ndarray, box, width_min: float):
        n, m = Z.shape
        self.periodic_box = box is not None
        if self.periodic_box:
            lo, hi = np.zeros(m), np.asarray(box, dtype=np.float64)
            if n and not (Z.min() >= 0.0 and np.all(Z.max(axis=0) < hi)):  # (a wrapped torus needs no pass)
                Z = np.mod(Z, hi)
                Z = np.where(Z >= hi, 0.0, Z)
        else:
            lo, hi = Z.min(axis=0), Z.max(axis=0)
        extent = np.maximum(hi - lo, 1e-300)
        # at most ~N cells in all (empty space costs memory, not time); a tiny width cannot overflow the count
        ncell = np.maximum(1, np.floor(np.minimum(extent / width_min, 2.0**40))).astype(np.int64)
        while np.prod(ncell.astype(float)) > max(4.0 * n, 64.0):
            ncell = np.maximum(1, ncell // 2)
        self._Z, self._pad = Z, MAX_CELL_DIM - m
        pad = self._pad
        self.lo, self.width, self.box = np.zeros(3), np.ones(3), np.ones(3)
        self.lo[pad:], self.width[pad:], self.box[pad:] = lo, extent / ncell, hi if self.periodic_box else 1.0
        self.ncell = np.ones(3, np.int64)
        self.ncell[pad:] = ncell
        self.periodic = np.zeros(3, np.bool_)
        self.periodic[pad:] = self.periodic_box

    def bin(self) -> "CellGrid":
        """Sort the points into their cells (O(N)): sets ``Z3``, ``order`` and ``start``."""
        n = self._Z.shape[0]
        self.Z3 = fresh_array(n * MAX_CELL_DIM, np.float64).reshape(n, MAX_CELL_DIM)
        self.Z3[:, : self._pad] = 0.0
        self.Z3[:, self._pad:] = self._Z
        cells = _cell_index(self.Z3, self.lo, self.width, self.ncell, self.periodic_box)
        self.order, self.start = _counting_order(cells, int(np.prod(self.ncell)))
        return self

    def reach(self, r: float) -> np.ndarray | None:
        """Cells to search each side, per axis, for every point within r; None where a periodic axis is too short
        (fewer than 2 reach + 1 cells: a cell and its wrapped neighbours would coincide)."""
        reach = np.where(self.ncell > 1, np.ceil(r / self.width), 0).astype(np.int64)
        if np.any(self.periodic & (self.ncell < 2 * reach + 1)):
            return None
        return reach


def cell_neighbours(Z: np.ndarray, box, r: float, check=None):
    """All pairs with |z_i - z_j| <= r (minimum image on a periodic ``box``), with the points in cell order.

    Returns (order, indptr, indices, squared distances): row p and column index q refer to the point
    ``order[p]``, so neighbours are near each other in memory (every later gather stays in cache), and the
    columns of a row come by neighbour cell, then by position (a fixed order: sums never depend on the thread
    count). None where the cell grid does not apply (m > 3, or fewer than 3 cells an axis on a periodic box,
    where a cell and its wrapped neighbours would coincide). ``check(nnz)`` runs before the O(nnz) arrays exist.
    """
    n, m = Z.shape
    if m > MAX_CELL_DIM or r <= 0:
        return None
    grid = CellGrid(Z, box, r)
    if grid.periodic_box and np.any(grid.ncell[MAX_CELL_DIM - m:] < 3):
        return None
    grid.bin()
    order = grid.order
    Zs = np.ascontiguousarray(grid.Z3[order])
    args = (grid.start, grid.lo, grid.width, grid.ncell, grid.box, grid.periodic, r * r)
    indptr = np.zeros(n + 1, np.int64)
    _cell_count(Zs, *args, indptr[1:])
    np.cumsum(indptr, out=indptr)
    nnz = int(indptr[-1])
    if check is not None:
        check(nnz)  # before the O(nnz) arrays are allocated
    indices = fresh_array(nnz, np.int32 if n < 2**31 - 1 else np.int64)
    dist2 = fresh_array(nnz, np.float64)
    _cell_fill(Zs, *args, indptr, indices, dist2)
    return order, indptr, indices, dist2


# ---------------------------------------------------------- kernel rows at a few points, on a grid of cells
# The layer's output at M rows of N points costs O(N) for the binning plus O(M x neighbours): each row visits
# only the cells that can hold points within r (cells of side r / ROWS_REFINE, reach ROWS_REFINE cells each
# side, minus the cells whose nearest corner is farther than r), in runs along the last axis.
ROWS_REFINE = 3


@njit(cache=True)
def _reach_ranges(z, lo, width, ncell, box, periodic, start, reach, r2, ranges):
    """Candidate ranges (p0, p1, shift0, shift1, shift2) of z: every point within sqrt(r2) lies in one of them."""
    n0, n1, n2 = ncell[0], ncell[1], ncell[2]
    c0 = min(max(int((z[0] - lo[0]) / width[0]), 0), n0 - 1)
    c1 = min(max(int((z[1] - lo[1]) / width[1]), 0), n1 - 1)
    c2 = min(max(int((z[2] - lo[2]) / width[2]), 0), n2 - 1)
    count = 0
    for o0 in range(-reach[0], reach[0] + 1):
        q0, s0, ok0 = _wrapped(c0 + o0, n0, box[0], periodic[0])
        if not ok0:
            continue
        g0 = max(abs(o0) - 1, 0) * width[0]  # the cell's nearest distance to z along this axis, at least
        for o1 in range(-reach[1], reach[1] + 1):
            q1, s1, ok1 = _wrapped(c1 + o1, n1, box[1], periodic[1])
            if not ok1:
                continue
            g1 = max(abs(o1) - 1, 0) * width[1]
            rest = r2 - g0 * g0 - g1 * g1
            if rest < 0.0:
                continue
            r2cells = min(reach[2], int(math.sqrt(rest) / width[2]) + 1)
            base = (q0 * n1 + q1) * n2
            first, last = c2 - r2cells, c2 + r2cells
            a, b = max(first, 0), min(last, n2 - 1)
            ranges[count, 0], ranges[count, 1] = start[base + a], start[base + b + 1]
            ranges[count, 2], ranges[count, 3], ranges[count, 4] = s0, s1, 0.0
            count += 1
            if periodic[2] and first < 0:  # the cells past the lower end: the top ones, one period down
                ranges[count, 0], ranges[count, 1] = start[base + n2 + first], start[base + n2]
                ranges[count, 2], ranges[count, 3], ranges[count, 4] = s0, s1, box[2]
                count += 1
            if periodic[2] and last > n2 - 1:
                ranges[count, 0], ranges[count, 1] = start[base], start[base + last - n2 + 1]
                ranges[count, 2], ranges[count, 3], ranges[count, 4] = s0, s1, -box[2]
                count += 1
    return count


@njit(cache=True, inline="always")
def _masked_weight(ZT, p, z0, z1, z2, r2, c, s):
    """exp(-c |z - z_p|^2 - s_p) within sqrt(r2), else exactly 0 (a select: the lane loop stays vectorised);
    z is the query with the range's shifts added, as scalars (loads through an array would not be hoisted)."""
    d = z0 - ZT[0, p]
    d2 = d * d
    d = z1 - ZT[1, p]
    d2 += d * d
    d = z2 - ZT[2, p]
    d2 += d * d
    return fast_exp(-c * d2 - s[p]) * (d2 <= r2)


@njit(parallel=True, cache=True)
def _in_cell_order(Z3, V, s, order, ZT, VT, sp):  # pragma: no cover - compiled
    """Coordinates (3, N), values with a row of ones and zero padding (width, N) and s, in cell order."""
    n, k = V.shape
    for p in prange(n):
        i = order[p]
        for a in range(3):
            ZT[a, p] = Z3[i, a]
        for col in range(k):
            VT[col, p] = V[i, col]
        VT[k, p] = 1.0
        for col in range(k + 1, VT.shape[0]):
            VT[col, p] = 0.0
        sp[p] = s[i]


@njit(cache=True)
def _all_ranges(Q, lo, width, ncell, box, periodic, start, reach, r2):  # pragma: no cover - compiled
    """The candidate ranges of every query, (nq, max ranges, 5), and how many each has."""
    nranges = (2 * reach[0] + 1) * (2 * reach[1] + 1) * 3
    ranges = np.empty((Q.shape[0], nranges, 5))
    counts = np.empty(Q.shape[0], np.int64)
    for t in range(Q.shape[0]):
        counts[t] = _reach_ranges(Q[t], lo, width, ncell, box, periodic, start, reach, r2, ranges[t])
    return ranges, counts


@njit(parallel=True, cache=True)
def _cell_rows_sum(ZT, Q, ranges, counts, r2, c, s, VT, m):  # pragma: no cover - compiled
    """Rows of the truncated kernel over precomputed candidate ranges (the row loop holds no call and no
    allocation but its accumulators: with either, LLVM leaves the lane loop scalar, 7x slower here)."""
    nq = Q.shape[0]
    out = np.zeros((nq, m))
    for t in prange(nq):
        acc = np.zeros((m, LANES))
        for u in range(counts[t]):
            # provably >= 0 (unsigned): a signed index takes Numba's negative-index wraparound, a select per
            # lane, and the loads become gathers
            p0, p1 = max(int(ranges[t, u, 0]), 0), max(int(ranges[t, u, 1]), 0)
            # (z + shift) - z_p: rounded once more than (z - z_p) + shift, ~1e-16 of the period
            z0, z1, z2 = Q[t, 0] + ranges[t, u, 2], Q[t, 1] + ranges[t, u, 3], Q[t, 2] + ranges[t, u, 4]
            nblocks = (p1 - p0) // LANES
            for blk in range(nblocks):
                b = np.uint64(p0 + blk * LANES)
                for j in range(LANES):
                    q = b + np.uint64(j)
                    w = _masked_weight(ZT, q, z0, z1, z2, r2, c, s)
                    for col in range(m):
                        acc[col, j] += w * VT[col, q]
            for p in range(p0 + nblocks * LANES, p1):
                w = _masked_weight(ZT, np.uint64(p), z0, z1, z2, r2, c, s)
                for col in range(m):
                    acc[col, 0] += w * VT[col, np.uint64(p)]
        _reduce_lanes(acc, out, t)
    return out


@njit(cache=True)
def _cell_rows_sum_literal(ZT, Q, ranges, counts, r2, c, s, VT, m):
    return _cell_rows_sum(ZT, Q, ranges, counts, r2, c, s, VT, literally(m))


def cell_rows_candidates(Z: np.ndarray, box, r: float) -> float | None:
    """The fraction of the N points a row of :func:`cell_rows_sum` visits at most (its cells, before the
    pruning to the ball), or None where the grid does not apply; costs the extent of the points only."""
    if Z.shape[1] > MAX_CELL_DIM or r <= 0:
        return None
    grid = CellGrid(Z, box, r / ROWS_REFINE)
    reach = grid.reach(r)
    if reach is None:
        return None
    return float(np.prod(np.minimum(1.0, (2 * reach + 1) / grid.ncell)))


def cell_rows_sum(Z: np.ndarray, box, r: float, rows: np.ndarray, c: float, s: np.ndarray, V: np.ndarray):
    """out[t, :k] = sum_{j : |z_i - z_j| <= r} exp(-c |z_i - z_j|^2 - s_j) V[j], out[t, k] = the same sum of 1,
    for i = rows[t] (minimum image on a periodic ``box``): the rows of the truncated kernel, O(N + M k).

    None where the grid of cells does not apply (m > 3, a value width k + 1 above LANE_MAX_DIM, or a periodic
    axis shorter than 2 r + one cell). Each row's sum runs in a fixed order (by cell, then position, in lanes).
    """
    n, m = Z.shape
    if m > MAX_CELL_DIM or r <= 0 or V.shape[1] + 1 > LANE_MAX_DIM:
        return None
    grid = CellGrid(Z, box, r / ROWS_REFINE)
    reach = grid.reach(r)
    if reach is None:
        return None
    grid.bin()
    width = _lane_width(V.shape[1] + 1)
    # fresh pages of their own (``fresh_array``): first touch of huge pages costs more than the work here
    ZT, VT, sp = (fresh_array(a * n, np.float64).reshape(a, n) for a in (3, width, 1))
    _in_cell_order(grid.Z3, np.ascontiguousarray(V), np.ascontiguousarray(s), grid.order, ZT, VT, sp[0])
    sp = sp[0]
    Q = np.ascontiguousarray(grid.Z3[rows])
    ranges, counts = _all_ranges(Q, grid.lo, grid.width, grid.ncell, grid.box, grid.periodic, grid.start, reach, r * r)
    out = _call_literal(_cell_rows_sum_literal, (8,), ZT, Q, ranges, counts, r * r, float(c), sp, VT, width)
    return out[:, : V.shape[1] + 1]  # rows k + 1 on of VT are zero padding


@njit(parallel=True, cache=True)
def csr_scale(indptr, indices, kdata, r, s):  # pragma: no cover - compiled
    """S_ij = K_ij exp(-r_i - s_j) on the stored pairs, without materialising the row index of each pair.

    As K_ij e^-r_i e^-s_j: 2 N exponentials instead of one a pair (the products differ from exp(-r_i - s_j)
    by an ulp or two). Where a factor over- or underflows, that row uses exp(-r_i - s_j) itself.
    """
    n = indptr.size - 1
    es = np.exp(-s)
    ok = True
    for j in range(es.size):
        if not (es[j] > 0.0 and es[j] < np.inf):
            ok = False
    out = np.empty_like(kdata)
    for a in prange(n):
        ea = np.exp(-r[a])
        if ok and ea > 0.0 and ea < np.inf:
            for p in range(indptr[a], indptr[a + 1]):
                out[p] = kdata[p] * ea * es[indices[p]]
        else:
            for p in range(indptr[a], indptr[a + 1]):
                out[p] = kdata[p] * np.exp(-r[a] - s[indices[p]])
    return out


def csr_scale_ref(indptr, indices, kdata, r, s) -> np.ndarray:
    rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    return kdata * np.exp(-r[rows] - s[indices])


def cell_neighbours_ref(Z: np.ndarray, box, r: float):
    """The same CSR pairs from scipy's cKDTree (the reference of :func:`cell_neighbours`)."""
    from scipy.spatial import cKDTree

    n = Z.shape[0]
    if box is not None:
        Z = np.mod(Z, box)
        Z = np.where(Z >= box, 0.0, Z)
    tree = cKDTree(Z, boxsize=box)
    pairs = tree.sparse_distance_matrix(tree, r, output_type="ndarray")
    order = np.lexsort((pairs["j"], pairs["i"]))
    rows, cols, d = pairs["i"][order], pairs["j"][order], pairs["v"][order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    return indptr, cols, d * d


# ----------------------------------------------------------------------------------- NumPy references
def row_blocks(na: int, nb: int):
    step = max(1, _BLOCK_ENTRIES // max(nb, 1))
    for start in range(0, na, step):
        yield slice(start, min(start + step, na))


def score_block(family, A, B, M, use_M, period) -> np.ndarray:
    """f(a, b) for all a in A, b in B (len(A) x len(B)); the NumPy twin of ``_exponents`` (without the shifts)."""
    if family == DOT:
        return -(A @ B.T)
    D = A[:, None, :] - B[None, :, :]
    if np.any(period > 0):
        safe = np.where(period > 0, period, 1.0)
        D = np.where(period > 0, D - period * np.rint(D * (1.0 / safe)), D)
    if use_M:
        return np.einsum("abk,km,abm->ab", D, M, D)
    return np.sum(D * D, axis=-1)


@np.errstate(over="ignore")  # c f = inf for eps near the smallest float: weight exp(-inf) = 0, as in the kernels
def kernel_sum_ref(family, A, BT, M, use_M, period, c, r, s, V) -> np.ndarray:
    B = BT.T
    out = np.empty((A.shape[0], V.shape[1]))
    for rows in row_blocks(A.shape[0], B.shape[0]):
        W = np.exp(-c * score_block(family, A[rows], B, M, use_M, period) - r[rows, None] - s[None, :])
        out[rows] = W @ V
    return out


@np.errstate(over="ignore")
def kernel_lse_ref(family, A, BT, M, use_M, period, c, s) -> np.ndarray:
    B = BT.T
    out = np.empty(A.shape[0])
    for rows in row_blocks(A.shape[0], B.shape[0]):
        T = -c * score_block(family, A[rows], B, M, use_M, period) - s[None, :]
        top = T.max(axis=1)
        out[rows] = top + np.log(np.exp(T - top[:, None]).sum(axis=1))
    return out


@np.errstate(over="ignore")
def kernel_displacement_ref(family, A, BT, M, use_M, period, X, xperiod, c, r, s) -> np.ndarray:
    B = BT.T
    d = X.shape[1]
    out = np.empty((A.shape[0], d + 1))
    for rows in row_blocks(A.shape[0], B.shape[0]):
        W = np.exp(-c * score_block(family, A[rows], B, M, use_M, period) - r[rows, None] - s[None, :])
        D = X[None, :, :] - X[rows, None, :]
        if np.any(xperiod > 0):
            safe = np.where(xperiod > 0, xperiod, 1.0)
            D = np.where(xperiod > 0, D - xperiod * np.rint(D * (1.0 / safe)), D)
        out[rows, :d] = np.einsum("ab,abk->ak", W, D)
        out[rows, d] = W.sum(axis=1)
    return out


@np.errstate(over="ignore")
def cell_rows_sum_ref(Z: np.ndarray, box, r: float, rows: np.ndarray, c: float, s: np.ndarray, V: np.ndarray):
    """The reference of :func:`cell_rows_sum`: every pair's distance, in row blocks (O(M N))."""
    if box is not None:
        Z = np.mod(Z, box)
        Z = np.where(Z >= box, 0.0, Z)
    out = np.empty((rows.size, V.shape[1] + 1))
    for block in row_blocks(rows.size, Z.shape[0]):
        D = Z[rows[block], None, :] - Z[None, :, :]
        if box is not None:
            D = D - box * np.rint(D * (1.0 / np.asarray(box)))
        d2 = np.sum(D * D, axis=-1)
        W = np.where(d2 <= r * r, np.exp(-c * d2 - s[None, :]), 0.0)
        out[block, :-1], out[block, -1] = W @ V, W.sum(axis=1)
    return out


def csr_matmul_ref(indptr, indices, data, V) -> np.ndarray:
    from scipy import sparse

    n = indptr.size - 1
    return np.asarray(sparse.csr_matrix((data, indices, indptr), shape=(n, V.shape[0])) @ V)


def dense_matmul_ref(S, V) -> np.ndarray:
    return S @ V


def dense_tmatmul_ref(S, V) -> np.ndarray:
    return S.T @ V


NUMBA = {"sum": kernel_sum, "lse": kernel_lse, "displacement": kernel_displacement, "csr": csr_matmul,
         "dense": dense_matmul, "dense_t": dense_tmatmul, "csr_scale": csr_scale, "cell_rows": cell_rows_sum}
NUMPY = {"sum": kernel_sum_ref, "lse": kernel_lse_ref, "displacement": kernel_displacement_ref,
         "csr": csr_matmul_ref, "dense": dense_matmul_ref, "dense_t": dense_tmatmul_ref, "csr_scale": csr_scale_ref,
         "cell_rows": cell_rows_sum_ref}
