"""Kernels of the conservative finite-volume operator, Numba and NumPy side by side.

Both functions compute, on a 3-D array layout (1-D and 2-D grids use leading singleton axes),

    out = beta * y + alpha * cout * D u,      D u = sum_a d_a( sum_b A^{ab} d_b u ),

in flux form. The flux through the face between node n and its upper neighbour n + e_a along axis a is

    F_a(n) = faces[a][n] (u[n + e_a] - u[n]) / h_a
             + sum_{b != a} mixed[a, b][n] * ( T_b u[n] + T_b u[n + e_a] ) / 2,
    T_b u[n] = (u[n + e_b] - u[n - e_b]) / (2 h_b),

and (D u)[n] = sum_a (F_a(n) - F_a(n - e_a)) / h_a. Face neighbours wrap around (index n_a - 1 is the face
between the last and the first node); on a no-flux box the caller zeroes the coefficients of that face, which
is then the wall face of both the last node (above) and the first node (below). Tangential neighbours come
from the index tables ``tp``/``tm`` (wrap-around on a torus, reflection at a wall). Every face flux enters
two nodes with opposite signs, so sum_n (D u)[n] = 0 up to round-off: the conservation the solver relies on.

Kernels assume valid input (C-contiguous float64, matching shapes, ``out`` not aliasing ``u`` or ``y``);
the public layer (:mod:`continuum_attention.pde.operators`) validates once.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["apply_numba", "apply_numpy"]


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
    # Mixed part of F_a through the face above node (i, j, k): tangential differences averaged over its two nodes.
    n = u.shape[a]
    i2, j2, k2 = i, j, k
    if a == 0:
        i2 = i + 1 if i + 1 < n else 0
    elif a == 1:
        j2 = j + 1 if j + 1 < n else 0
    else:
        k2 = k + 1 if k + 1 < n else 0
    both = _tangential(u, tp, tm, b, i, j, k) + _tangential(u, tp, tm, b, i2, j2, k2)
    return mixed[a, b, i, j, k] * 0.25 * inv_h[b] * both


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


@njit(cache=True, fastmath=False)
def _nodal_row(u, y, coef, acc, i, j, c0, c1, c2, wrap, alpha, beta):
    # Nodal mode, one row: every term of the update in a single loop with one store per node, so that LLVM
    # can vectorise it (behind a runtime alias check) -- separate "+=" passes over the row did not vectorise.
    n0, n1, n2 = u.shape
    last = n2 - 1
    uc, s, yc = u[i, j], coef[0, i, j], y[i, j]
    jp = j + 1 if j + 1 < n1 else 0
    jm = j - 1 if j > 0 else n1 - 1
    up1, dn1, su1, sd1 = u[i, jp], u[i, jm], coef[0, i, jp], coef[0, i, jm]
    cu1 = c1 * (wrap if j == n1 - 1 else 1.0) if n1 > 1 else 0.0
    cd1 = c1 * (wrap if j == 0 else 1.0) if n1 > 1 else 0.0
    ip = i + 1 if i + 1 < n0 else 0
    im = i - 1 if i > 0 else n0 - 1
    up0, dn0, su0, sd0 = u[ip, j], u[im, j], coef[0, ip, j], coef[0, im, j]
    cu0 = c0 * (wrap if i == n0 - 1 else 1.0) if n0 > 1 else 0.0
    cd0 = c0 * (wrap if i == 0 else 1.0) if n0 > 1 else 0.0
    # Axis-2 fluxes of the row ends (wall or wrap-around face) first, stored in acc; then one pass does the rest.
    lo = wrap * (s[last] + s[0]) * (uc[0] - uc[last])
    acc[0] = c2 * ((s[0] + s[1]) * (uc[1] - uc[0]) - lo)
    acc[last] = c2 * (lo - (s[last - 1] + s[last]) * (uc[last] - uc[last - 1]))
    _nodal_cross(acc, uc, s, yc, up1, dn1, su1, sd1, cu1, cd1, up0, dn0, su0, sd0, cu0, cd0, 0, 1, alpha, beta, n0 > 1)
    _nodal_cross(acc, uc, s, yc, up1, dn1, su1, sd1, cu1, cd1, up0, dn0, su0, sd0, cu0, cd0, last, last + 1, alpha, beta, n0 > 1)
    # Interior in a separate function on whole rows: few distinct pointers, so LLVM's runtime alias checks
    # between the output row and the inputs stay within its budget.
    if n0 > 1:
        _nodal_interior3(acc, uc, s, yc, up1, dn1, su1, sd1, cu1, cd1, up0, dn0, su0, sd0, cu0, cd0, c2, alpha, beta)
    else:
        _nodal_interior2(acc, uc, s, yc, up1, dn1, su1, sd1, cu1, cd1, c2, alpha, beta)


@njit(cache=True, fastmath=False)
def _nodal_cross(acc, uc, s, yc, up1, dn1, su1, sd1, cu1, cd1, up0, dn0, su0, sd0, cu0, cd0, k0, k1, alpha, beta, three):
    # Row-end nodes k0..k1-1 (acc already holds their axis-2 fluxes): axis-1/axis-0 fluxes and the update.
    for k in range(k0, k1):
        sk, uk = s[k], uc[k]
        d = acc[k] + cu1 * (su1[k] + sk) * (up1[k] - uk) - cd1 * (sk + sd1[k]) * (uk - dn1[k])
        if three:
            d += cu0 * (su0[k] + sk) * (up0[k] - uk) - cd0 * (sk + sd0[k]) * (uk - dn0[k])
        acc[k] = beta * yc[k] + alpha * d / sk


@njit(cache=True, fastmath=False)
def _nodal_interior2(acc, uc, s, yc, up1, dn1, su1, sd1, cu1, cd1, c2, alpha, beta):
    for k in range(1, uc.shape[0] - 1):
        sk, uk = s[k], uc[k]
        d = c2 * ((sk + s[k + 1]) * (uc[k + 1] - uk) - (s[k - 1] + sk) * (uk - uc[k - 1]))
        d += cu1 * (su1[k] + sk) * (up1[k] - uk) - cd1 * (sk + sd1[k]) * (uk - dn1[k])
        acc[k] = beta * yc[k] + alpha * d / sk


@njit(cache=True, fastmath=False)
def _nodal_interior3(acc, uc, s, yc, up1, dn1, su1, sd1, cu1, cd1, up0, dn0, su0, sd0, cu0, cd0, c2, alpha, beta):
    for k in range(1, uc.shape[0] - 1):
        sk, uk = s[k], uc[k]
        d = c2 * ((sk + s[k + 1]) * (uc[k + 1] - uk) - (s[k - 1] + sk) * (uk - uc[k - 1]))
        d += cu1 * (su1[k] + sk) * (up1[k] - uk) - cd1 * (sk + sd1[k]) * (uk - dn1[k])
        d += cu0 * (su0[k] + sk) * (up0[k] - uk) - cd0 * (sk + sd0[k]) * (uk - dn0[k])
        acc[k] = beta * yc[k] + alpha * d / sk


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
            _nodal_row(u, y, coef, acc, i, j, c0, c1, c2, wrap, alpha, beta)
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
                t = np.take(u, tp[b, :nb], axis=b) - np.take(u, tm[b, :nb], axis=b)
                flux = flux + mixed[a, b] * 0.25 * inv_h[b] * (t + np.roll(t, -1, axis=a))
        div += (flux - np.roll(flux, 1, axis=a)) * inv_h[a]
    out[...] = beta * y + alpha * cout * div
    return out
