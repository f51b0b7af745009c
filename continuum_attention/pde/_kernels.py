"""Kernels of the conservative finite-volume operator, Numba and NumPy side by side.

:func:`apply_numba` / :func:`apply_numpy` (one application or one fused explicit step) compute, on a 3-D
array layout (1-D and 2-D grids use leading singleton axes),

    out = beta * y + alpha * cout * D u,      D u = sum_a d_a( sum_b A^{ab} d_b u ),

in flux form. The flux through the face between node n and its upper neighbour n + e_a along axis a is

    F_a(n) = faces[a][n] (u[n + e_a] - u[n]) / h_a
             + sum_{b != a} ( mixed[a, b][n] T_b u[n] + mixed[a, b][n + e_a] T_b u[n + e_a] ) / 2,
    T_b u[n] = (u[n + e_b] - u[n - e_b]) / (2 h_b),

and (D u)[n] = sum_a (F_a(n) - F_a(n - e_a)) / h_a. Face neighbours wrap around (index n_a - 1 is the face
between the last and the first node); on a no-flux box that face is the wall face of both the last node (above)
and the first node (below): the caller zeroes its diagonal coefficient ``faces[a]`` and the kernels give it no
mixed flux. ``mixed`` holds nodal coefficients a^{ab}: averaging the products a^{ab} T_b u over the two nodes of
a face makes the mixed divergence the node-centred stencil (a_{n+e} T_b u_{n+e} - a_{n-e} T_b u_{n-e}) / (2 h_a),
whose matrix is symmetric for any coefficients, so D is symmetric for every metric and density. Tangential
neighbours come from the index tables ``tp``/``tm`` (wrap-around on a torus, reflection at a wall). Every face
flux enters two nodes with opposite signs, so sum_n (D u)[n] = 0 up to round-off: the conservation the solver
relies on.

:func:`advance_numba` / :func:`advance_numpy` advance several explicit Euler steps of nodal mode at once
(temporal blocking; the NumPy reference is repeated :func:`apply_numpy`). :func:`repeat_numba` /
:func:`repeat_numpy` run several single-pass steps of nodal mode in one call (no temporal blocking: for grids
whose arrays stay in cache, where a call per step costs more than the pass over memory saves);
:func:`repeat_2d` (one thread) and :func:`repeat_2d_parallel` are the same for a 2-D grid, with the rows
inlined (their NumPy reference is :func:`repeat_numpy` too).

Kernels assume valid input (C-contiguous float64, matching shapes, ``out`` not aliasing ``u`` or ``y``);
the public layer (:mod:`continuum_attention.pde.operators`) validates once.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["apply_numba", "apply_numpy", "advance_numba", "advance_numpy", "repeat_numba", "repeat_numpy",
           "repeat_2d", "repeat_2d_parallel"]


@njit(cache=True, fastmath=False)
def _tangential(u, tp, tm, b, i, j, k):
    # Undivided central difference along axis b at node (i, j, k).
    if b == 0:
        return u[tp[0, i], j, k] - u[tm[0, i], j, k]
    if b == 1:
        return u[i, tp[1, j], k] - u[i, tm[1, j], k]
    return u[i, j, tp[2, k]] - u[i, j, tm[2, k]]


@njit(cache=True, fastmath=False)
def _mixed_flux(u, mixed, inv_h, tp, tm, a, b, i, j, k):
    # Mixed part of F_a through the face above node (i, j, k): the mean over the face's two nodes of the
    # nodal a^{ab} times the tangential difference. Its divergence is then the node-centred stencil
    # (a^{ab}_{n+e} T_b u_{n+e} - a^{ab}_{n-e} T_b u_{n-e}) / (2 h_a), whose matrix is symmetric for any
    # coefficients. A wall face (the reflection table maps the last node to itself) carries no flux.
    i2, j2, k2 = i, j, k
    if a == 0:
        i2 = tp[0, i]
        if i2 == i:
            return 0.0
    elif a == 1:
        j2 = tp[1, j]
        if j2 == j:
            return 0.0
    else:
        k2 = tp[2, k]
        if k2 == k:
            return 0.0
    here = mixed[a, b, i, j, k] * _tangential(u, tp, tm, b, i, j, k)
    there = mixed[a, b, i2, j2, k2] * _tangential(u, tp, tm, b, i2, j2, k2)
    return 0.25 * inv_h[b] * (here + there)


@njit(cache=True, fastmath=False)
def _mixed_divergence(u, mixed, inv_h, tp, tm, i, j, k):
    total = 0.0
    for a in range(3):
        n = u.shape[a]
        if n == 1:
            continue
        i0, j0, k0 = i, j, k  # lower node of the face below (i, j, k) along a
        if a == 0:
            i0 = i - 1 if i > 0 else n - 1
        elif a == 1:
            j0 = j - 1 if j > 0 else n - 1
        else:
            k0 = k - 1 if k > 0 else n - 1
        for b in range(3):
            if b == a or u.shape[b] == 1:
                continue
            upper = _mixed_flux(u, mixed, inv_h, tp, tm, a, b, i, j, k)
            lower = _mixed_flux(u, mixed, inv_h, tp, tm, a, b, i0, j0, k0)
            total += (upper - lower) * inv_h[a]
    return total


# ---------------------------------------------------------------------------------------------------------
# Nodal mode row primitives (shared by the single-step and the multi-step kernel)
#
# error_model="numpy": a float division then compiles to a plain divide; with Numba's default ("python") it
# carries a ZeroDivisionError branch, which is what kept LLVM from vectorising the update loop. Every loop over
# a row reads a handful of whole rows indexed by k-1, k, k+1 only, so LLVM's runtime alias checks between the
# destination row and the inputs stay within its budget (at most 8 pointers) and the loops vectorise
# (checked: packed <4 x double> / ymm arithmetic in the assembly). s > 0 everywhere (validated upstream).
# ---------------------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False, inline="always")
def _cross(cu, cd, sk, su, sd, uk, up, dn):
    # Flux difference along one axis orthogonal to the row: upper face minus lower face (coefficients folded).
    return cu * (su + sk) * (up - uk) - cd * (sk + sd) * (uk - dn)


# inline="always": inlined into the caller at Numba IR level, so a loop over rows pays no call per row (the 2-D
# in-cache kernels below are 1.4x faster for it at 128^2) and every caller evaluates the same expressions
@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False, inline="always")
def _row_update(dst, uc, sc, y, up, dn, su, sd, cu, cd, c2, wrap, alpha, beta):
    """dst = beta*y + alpha*(D_2 u + D_b u)/s on one row: row axis 2 plus ONE orthogonal axis b (rows up/dn)."""
    last = uc.shape[0] - 1
    lo = wrap * (sc[last] + sc[0]) * (uc[0] - uc[last])  # wrap-around (torus) or wall (box: 0) face flux
    d = c2 * ((sc[0] + sc[1]) * (uc[1] - uc[0]) - lo)
    d += _cross(cu, cd, sc[0], su[0], sd[0], uc[0], up[0], dn[0])
    dst[0] = beta * y[0] + alpha * d / sc[0]
    for k in range(1, last):
        sk, uk = sc[k], uc[k]
        d = c2 * ((sk + sc[k + 1]) * (uc[k + 1] - uk) - (sc[k - 1] + sk) * (uk - uc[k - 1]))
        d += _cross(cu, cd, sk, su[k], sd[k], uk, up[k], dn[k])
        dst[k] = beta * y[k] + alpha * d / sk
    d = c2 * (lo - (sc[last - 1] + sc[last]) * (uc[last] - uc[last - 1]))
    d += _cross(cu, cd, sc[last], su[last], sd[last], uc[last], up[last], dn[last])
    dst[last] = beta * y[last] + alpha * d / sc[last]


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _row_flux(dst, uc, sc, up, dn, su, sd, cu, cd, c2, wrap):
    """dst = D_2 u + D_1 u on one row (first half of the 3-D update; see :func:`_row_finish`)."""
    last = uc.shape[0] - 1
    lo = wrap * (sc[last] + sc[0]) * (uc[0] - uc[last])
    d = c2 * ((sc[0] + sc[1]) * (uc[1] - uc[0]) - lo)
    dst[0] = d + _cross(cu, cd, sc[0], su[0], sd[0], uc[0], up[0], dn[0])
    for k in range(1, last):
        sk, uk = sc[k], uc[k]
        d = c2 * ((sk + sc[k + 1]) * (uc[k + 1] - uk) - (sc[k - 1] + sk) * (uk - uc[k - 1]))
        dst[k] = d + _cross(cu, cd, sk, su[k], sd[k], uk, up[k], dn[k])
    d = c2 * (lo - (sc[last - 1] + sc[last]) * (uc[last] - uc[last - 1]))
    dst[last] = d + _cross(cu, cd, sc[last], su[last], sd[last], uc[last], up[last], dn[last])


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _row_finish(dst, uc, sc, y, up, dn, su, sd, cu, cd, alpha, beta):
    """dst = beta*y + alpha*(dst + D_0 u)/s in place: dst holds D_2 u + D_1 u from :func:`_row_flux`."""
    for k in range(uc.shape[0]):
        sk = sc[k]
        d = dst[k] + _cross(cu, cd, sk, su[k], sd[k], uc[k], up[k], dn[k])
        dst[k] = beta * y[k] + alpha * d / sk


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _nodal_row(u, y, s, dst, i, j, c0, c1, c2, wrap, alpha, beta):
    # Nodal mode, row (i, j) of the single-step kernel. On a box the wall faces get coefficient 0 (the
    # neighbour row read there is the wrapped one: finite data times 0).
    n0, n1, _ = u.shape
    uc, sc, yc = u[i, j], s[i, j], y[i, j]
    jp = j + 1 if j + 1 < n1 else 0
    jm = j - 1 if j > 0 else n1 - 1
    cu1 = c1 * (wrap if j == n1 - 1 else 1.0) if n1 > 1 else 0.0
    cd1 = c1 * (wrap if j == 0 else 1.0) if n1 > 1 else 0.0
    if n0 == 1:
        _row_update(dst, uc, sc, yc, u[i, jp], u[i, jm], s[i, jp], s[i, jm], cu1, cd1, c2, wrap, alpha, beta)
        return
    ip = i + 1 if i + 1 < n0 else 0
    im = i - 1 if i > 0 else n0 - 1
    cu0 = c0 * (wrap if i == n0 - 1 else 1.0)
    cd0 = c0 * (wrap if i == 0 else 1.0)
    if n1 == 1:
        _row_update(dst, uc, sc, yc, u[ip, j], u[im, j], s[ip, j], s[im, j], cu0, cd0, c2, wrap, alpha, beta)
        return
    # 3-D: two passes over the row (one fused loop would read 12 rows: too many pointers to vectorise)
    _row_flux(dst, uc, sc, u[i, jp], u[i, jm], s[i, jp], s[i, jm], cu1, cd1, c2, wrap)
    _row_finish(dst, uc, sc, yc, u[ip, j], u[im, j], s[ip, j], s[im, j], cu0, cd0, alpha, beta)


@njit(parallel=True, cache=True, fastmath=False)
def apply_numba(u, y, out, coef, mixed, cout, inv_h, tp, tm, unit, wrap, alpha, beta, has_mixed):
    """Fused flux-difference-and-update pass: ``out = beta*y + alpha*cout*D u`` (see module docstring).

    ``coef`` is either the face coefficients (3, n0, n1, n2), or -- "nodal mode", coef.shape[0] == 1 -- one
    nodal scalar s with A^{aa} = s * unit[a], no mixed terms and cout = 1/s (the features form with a constant
    diagonal metric). Nodal mode forms the face means 0.5 (s_n + s_{n+e_a}) on the fly: the step then streams
    three arrays (u, s, out) instead of five, which is what matters on a memory-bound machine. ``wrap`` is 1
    on a torus and 0 on a box (nodal mode's wall faces carry no flux).

    One parallel loop over the rows (i, j); along each contiguous row the axis-2 fluxes, then the axis-1 and
    axis-0 fluxes (whose neighbour rows are still in cache), then the update are computed, so every array is
    streamed from memory once. Each face flux is evaluated twice (once per adjacent node) instead of being
    stored: cheaper than a temporary array on a bandwidth-bound machine.
    """
    n0, n1, n2 = u.shape
    nodal = coef.shape[0] == 1
    c0 = inv_h[0] * inv_h[0]
    c1 = inv_h[1] * inv_h[1]
    c2 = inv_h[2] * inv_h[2]
    if nodal:
        c0 *= 0.5 * unit[0]
        c1 *= 0.5 * unit[1]
        c2 *= 0.5 * unit[2]
    last = n2 - 1
    for r in prange(n0 * n1):
        i = r // n1
        j = r - i * n1
        acc = out[i, j]
        uc = u[i, j]
        if nodal:
            _nodal_row(u, y, coef[0], acc, i, j, c0, c1, c2, wrap, alpha, beta)
            continue
        f = coef[2, i, j]
        acc[0] = c2 * (f[0] * (uc[1] - uc[0]) - f[last] * (uc[0] - uc[last]))
        for k in range(1, last):
            acc[k] = c2 * (f[k] * (uc[k + 1] - uc[k]) - f[k - 1] * (uc[k] - uc[k - 1]))
        acc[last] = c2 * (f[last] * (uc[0] - uc[last]) - f[last - 1] * (uc[last] - uc[last - 1]))
        if n1 > 1:
            jp = j + 1 if j + 1 < n1 else 0
            jm = j - 1 if j > 0 else n1 - 1
            up, dn = u[i, jp], u[i, jm]
            fu, fd = coef[1, i, j], coef[1, i, jm]
            for k in range(n2):
                acc[k] += c1 * (fu[k] * (up[k] - uc[k]) - fd[k] * (uc[k] - dn[k]))
        if n0 > 1:
            ip = i + 1 if i + 1 < n0 else 0
            im = i - 1 if i > 0 else n0 - 1
            up, dn = u[ip, j], u[im, j]
            fu, fd = coef[0, i, j], coef[0, im, j]
            for k in range(n2):
                acc[k] += c0 * (fu[k] * (up[k] - uc[k]) - fd[k] * (uc[k] - dn[k]))
        if has_mixed:
            for k in range(n2):
                acc[k] += _mixed_divergence(u, mixed, inv_h, tp, tm, i, j, k)
        yc, cc = y[i, j], cout[i, j]
        for k in range(n2):
            acc[k] = beta * yc[k] + alpha * cc[k] * acc[k]
    return out


@njit(cache=True, inline="always")
def _axis_factor(inv_h, unit, a):
    # Nodal mode's factor along axis a: 1/h_a^2 times half the unit metric (the face mean 0.5 (s_n + s_n+e) has
    # its 0.5 folded in here)
    return inv_h[a] * inv_h[a] * (0.5 * unit[a])


@njit(cache=True, inline="always")
def _step_target(out, spare, steps, n):
    # Step n of ``steps`` writes (out, spare)[(steps - 1 - n) % 2]: the last step lands in out
    return out if (steps - 1 - n) % 2 == 0 else spare


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def repeat_numba(u, out, spare, s, inv_h, unit, wrap, dt, steps):
    """``steps`` explicit Euler steps of nodal mode, each one pass of the single-step row update, in one call.

    out = E^steps u with E u = u + dt D u / s (as :func:`advance_numba`), computed exactly as ``steps`` calls
    of :func:`apply_numba` (y = u, alpha = dt, beta = 1; the same row function, so bitwise equal), but without
    returning to Python between steps: step n writes ``(out, spare)[(steps - 1 - n) % 2]``, so the last one
    lands in ``out``. Layout (n0, n1, n2) as :func:`apply_numba`; ``out`` and ``spare`` must not alias ``u``
    or each other.
    """
    n0, n1, n2 = u.shape
    c0, c1, c2 = _axis_factor(inv_h, unit, 0), _axis_factor(inv_h, unit, 1), _axis_factor(inv_h, unit, 2)
    cur = u
    for n in range(steps):
        dst = _step_target(out, spare, steps, n)
        for r in prange(n0 * n1):
            i = r // n1
            j = r - i * n1
            _nodal_row(cur, cur, s, dst[i, j], i, j, c0, c1, c2, wrap, dt, 1.0)
        cur = dst
    return out


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def repeat_2d(u, out, spare, s, inv_h, unit, wrap, dt, steps):  # pragma: no cover - compiled
    """:func:`repeat_numba` for a 2-D grid in its (1, n1, n2) layout (n1 > 1, n2 > 1), one thread: the rows
    call :func:`_row_update` (inlined) directly, without a function call per row and without a parallel region
    per step (1.4x faster than :func:`repeat_numba` on one thread at 128^2), bitwise the single steps. For the
    small grids (below PARALLEL_2D_MIN_NODES) where a second thread does not pay.
    """
    n1 = u.shape[1]
    c1, c2 = _axis_factor(inv_h, unit, 1), _axis_factor(inv_h, unit, 2)
    sg, cur = s[0], u[0]
    for n in range(steps):
        dst = _step_target(out[0], spare[0], steps, n)
        for j in range(n1):
            _row_2d(dst, cur, sg, j, c1, c2, wrap, dt)
        cur = dst
    return out


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def repeat_2d_parallel(u, out, spare, s, inv_h, unit, wrap, dt, steps):  # pragma: no cover - compiled
    """:func:`repeat_2d` with the rows of each step split between the threads (one parallel region a step):
    the same row updates, so bitwise the same numbers. A function of its own, not ``repeat_2d`` compiled twice:
    one Python function compiled under two options shares one cache entry.
    """
    n1 = u.shape[1]
    c1, c2 = _axis_factor(inv_h, unit, 1), _axis_factor(inv_h, unit, 2)
    sg, cur = s[0], u[0]
    for n in range(steps):
        dst = _step_target(out[0], spare[0], steps, n)
        for j in prange(n1):
            _row_2d(dst, cur, sg, j, c1, c2, wrap, dt)
        cur = dst
    return out


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False, inline="always")
def _row_2d(dst, cur, sg, j, c1, c2, wrap, dt):
    # Row j of one Euler step of a 2-D grid (n1, n2): neighbour rows wrap around; on a box the wall faces of
    # the first and last rows get factor wrap = 0. Views are passed one by one: Numba 0.68 drops the statements
    # that follow an inner loop in a prange body when four or more array views are unpacked from one tuple
    # there (the earlier parallel twin of this kernel lost the last column of every row to it).
    n1 = cur.shape[0]
    jp = j + 1 if j + 1 < n1 else 0
    jm = j - 1 if j > 0 else n1 - 1
    cu = c1 * (wrap if j == n1 - 1 else 1.0)
    cd = c1 * (wrap if j == 0 else 1.0)
    uc = cur[j]
    _row_update(dst[j], uc, sg[j], uc, cur[jp], cur[jm], sg[jp], sg[jm], cu, cd, c2, wrap, dt, 1.0)


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _plane_step(dst, uc, up, dn, sc, su, sd, cu0, cd0, c1, c2, wrap, dt):
    # One Euler step of plane q (dst = uc + dt D u / s, u of the previous level): uc/up/dn are the planes q,
    # q+1, q-1 of that level; cu0/cd0 the axis-0 face factors (0 at a wall), c1/c2 the in-plane ones.
    n1 = uc.shape[0]
    for j in range(n1):
        if n1 == 1:
            _row_update(dst[j], uc[j], sc[j], uc[j], up[j], dn[j], su[j], sd[j], cu0, cd0, c2, wrap, dt, 1.0)
            continue
        jp = j + 1 if j + 1 < n1 else 0
        jm = j - 1 if j > 0 else n1 - 1
        cu1 = c1 * (wrap if j == n1 - 1 else 1.0)
        cd1 = c1 * (wrap if j == 0 else 1.0)
        row = dst[j]
        _row_flux(row, uc[j], sc[j], uc[jp], uc[jm], sc[jp], sc[jm], cu1, cd1, c2, wrap)
        _row_finish(row, uc[j], sc[j], uc[j], up[j], dn[j], su[j], sd[j], cu0, cd0, dt, 1.0)


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def advance_numba(u, out, s, inv_h, unit, wrap, dt, steps, nblocks):
    """``steps`` explicit Euler steps of nodal mode in one pass over memory (temporal blocking).

    out = E^steps u with E u = u + dt D u / s, D the nodal-mode flux operator of :func:`apply_numba`
    (face coefficients 0.5 (s_n + s_{n+e_a}) unit[a], wall faces 0 when ``wrap`` is 0, periodic when 1).
    The result equals ``steps`` calls of :func:`apply_numba` (y = u, alpha = dt, beta = 1): every node's
    update is the same floating-point expression, evaluated from the same values.

    The planes along axis 0 (rows of a 2-D grid laid out as (n, 1, m)) are swept as a wavefront: at sweep
    position t the level-k plane q = t - k + 1 is computed from the level-(k-1) planes q-1, q, q+1, so each
    level keeps only a ring of three planes (level 0 is ``u``, level ``steps`` goes straight to ``out``), and
    u, s and out are streamed from memory once per ``steps`` steps instead of once per step. The planes are
    split into ``nblocks`` contiguous blocks (one per thread); a block recomputes a halo of ``steps - k``
    planes of level k at each end (indices taken modulo n0 on a torus, clamped at the walls of a box), so
    blocks are independent. ``out`` must not alias ``u``.
    """
    n0, n1, n2 = u.shape
    c0 = _axis_factor(inv_h, unit, 0) if n0 > 1 else 0.0
    c1, c2 = _axis_factor(inv_h, unit, 1), _axis_factor(inv_h, unit, 2)
    periodic = wrap != 0.0
    halo = steps if n0 > 1 else 0
    nblocks = max(1, min(nblocks, n0))
    for blk in prange(nblocks):
        a = blk * n0 // nblocks
        b = (blk + 1) * n0 // nblocks
        ring = np.empty((max(steps - 1, 1), 3, n1, n2))
        for t in range(a - halo, b + steps):
            for k in range(1, steps + 1):
                q = t - k + 1
                lo = a - (steps - k) * (halo > 0)
                hi = b - 1 + (steps - k) * (halo > 0)
                if not periodic:
                    lo = max(lo, 0)
                    hi = min(hi, n0 - 1)
                if q < lo or q > hi:
                    continue
                p = q % n0
                pu = (q + 1) % n0
                pd = (q - 1) % n0
                cu0, cd0 = c0, c0
                if not periodic and q == n0 - 1:
                    cu0, pu = 0.0, p  # wall: no flux, read the centre plane (finite data times 0)
                if not periodic and q == 0:
                    cd0, pd = 0.0, p
                if k == 1:
                    uc, up, dn = u[p], u[pu], u[pd]
                else:
                    lev = ring[k - 2]  # level k-1: plane q sits in slot q % 3
                    uc = lev[q % 3]
                    up = lev[(q + 1) % 3] if pu != p else uc
                    dn = lev[(q - 1) % 3] if pd != p else uc
                dst = out[p] if k == steps else ring[k - 1, q % 3]
                _plane_step(dst, uc, up, dn, s[p], s[pu], s[pd], cu0, cd0, c1, c2, wrap, dt)
    return out


def advance_numpy(u, out, s, inv_h, unit, wrap, dt, steps, nblocks=1):
    """NumPy reference of :func:`advance_numba`: ``steps`` calls of :func:`apply_numpy` (nodal mode)."""
    coef = s.reshape(1, *s.shape)
    cur = np.array(u, dtype=np.float64)
    tp = tm = np.zeros((3, 1), dtype=np.int64)
    mixed = np.zeros((3, 3, 1, 1, 1))
    for _ in range(steps):
        cur = apply_numpy(cur, cur, np.empty_like(cur), coef, mixed, None, inv_h, tp, tm, unit, wrap, dt, 1.0, False)
    out[...] = cur
    return out


def repeat_numpy(u, out, spare, s, inv_h, unit, wrap, dt, steps):
    """NumPy reference of :func:`repeat_numba`: ``steps`` calls of :func:`apply_numpy` (nodal mode)."""
    return advance_numpy(u, out, s, inv_h, unit, wrap, dt, steps)


def nodal_to_faces(s: np.ndarray, unit: np.ndarray, wrap: float) -> np.ndarray:
    """Face coefficients (3, n0, n1, n2) of nodal mode: 0.5 (s_n + s_{n+e_a}) unit[a], wall faces 0."""
    faces = np.zeros((3, *s.shape))
    for a in range(3):
        if s.shape[a] == 1:
            continue
        faces[a] = 0.5 * (s + np.roll(s, -1, axis=a)) * unit[a]
        if wrap == 0.0:
            index = [slice(None)] * 3
            index[a] = -1
            faces[a][tuple(index)] = 0.0
    return faces


def apply_numpy(u, y, out, coef, mixed, cout, inv_h, tp, tm, unit, wrap, alpha, beta, has_mixed):
    """NumPy reference of :func:`apply_numba` (same arguments, same result to round-off)."""
    if coef.shape[0] == 1:
        coef, cout = nodal_to_faces(coef[0], unit, wrap), 1.0 / coef[0]
    div = np.zeros_like(u)
    for a in range(3):
        if u.shape[a] == 1:
            continue
        flux = coef[a] * (np.roll(u, -1, axis=a) - u) * inv_h[a]
        if has_mixed:
            for b in range(3):
                if b == a or u.shape[b] == 1:
                    continue
                nb = u.shape[b]
                t = mixed[a, b] * (np.take(u, tp[b, :nb], axis=b) - np.take(u, tm[b, :nb], axis=b))
                face = 0.25 * inv_h[b] * (t + np.roll(t, -1, axis=a))
                if wrap == 0.0:  # Box: the face above the last node is a wall
                    index = [slice(None)] * 3
                    index[a] = -1
                    face[tuple(index)] = 0.0
                flux = flux + face
        div += (flux - np.roll(flux, 1, axis=a)) * inv_h[a]
    out[...] = beta * y + alpha * cout * div
    return out
