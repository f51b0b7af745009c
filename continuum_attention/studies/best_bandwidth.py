"""The best kernel scale eps*(N) and the error at eps*, against the theory -1/(3 + d/2) (THEORY.md section 4).

Total consistency error = bias O(eps) + sampling O(N^-1/2 eps^-(1/2 + d/4)); balancing gives
eps* ~ N^(-1/(3 + d/2)) and error(eps*) ~ N^(-1/(3 + d/2)) (d = 1: -0.286, d = 2: -0.25, d = 3: -0.222).

Measurement: the total error of :mod:`.consistency` (same cases: circle, 2-torus, 3-torus with non-uniform
densities) on a fine log-spaced eps grid (ratio 10^0.1), averaged over seeds; eps*(N) is the parabola-refined
minimiser :meth:`ConvergenceResult.best_eps`, and both exponents are least-squares slopes in log-log.

Constants matter. The balance is only visible once the bias is linear in eps near eps*; the fixed-eps bias
(computed by quadrature, N = infinity) has a local slope beta(eps) that drops below 1 as eps grows (about
0.95 at eps = 2e-3 on the circle, 0.85 at 4e-3 on the 2-torus, 0.7-0.8 at 1e-2 on the 3-torus). With a local
slope beta the balance predicts the exponent -1/(2 beta + 1 + d/2) instead; this "effective" exponent is
reported beside the asymptotic one. The d = 1 checks use the asymptotic exponent with tolerance 0.08.
In d = 2 and 3 the eps* exponent is checked against the effective exponent (tolerance 0.05; over several seed
sets it lay within 0.02). The asymptotic exponents need the larger N of the full sweep (N up to 1.024e6): there
both the eps* and the error(eps*) exponents are checks against -1/(3 + d/2) with tolerance 0.05. The full sweep
reaches N = 1.024e7 in d = 2 and 3 (4.096e6 in d = 1), its eps grids a factor 10^0.4 below the eps* of
N = 1.024e6; each error is the layer at 400 rows of the N points (``AttentionOperator.apply_rows`` of the
truncated operator: a grid of cells, O(N + rows x neighbours), where it pays). Measured in ``reproduce --full``
on 2026-12-02 (seed 0; 8 seeds in d = 2, 6 in d = 3; 47 minutes): d = 2, eps* exponent -0.269 and error
exponent -0.239 against -0.25; d = 3, -0.239 and -0.212 against -0.222 (local bias slopes at eps* 0.93 and
0.90; effective exponents -0.258 and -0.232). Up to N = 1.024e6 only they had been -0.259 and -0.221 (d = 2),
-0.247 and -0.201 (d = 3): the error exponents move towards the prediction as N grows. The quick sweep
(N <= 64000) only reports them: its error exponent in d = 3 was -0.17 to -0.20.
The seed-to-seed spread of the RMS error is largest in d = 1 (about 17% per seed: the error is a random field
with correlation length ~ sqrt(eps), so a circle holds only a few dozen independent stretches of it), hence
more seeds there.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..compare import fit_slope
from ..plotting import add_slope
from ._base import Check, StudyResult, register
from .consistency import Case, circle_case, consistency_sweep, fixed_eps_bias, torus2_case, torus3_case

NAME = "best_bandwidth"

__all__ = ["theory_exponent", "measure", "run"]


def theory_exponent(d: int) -> float:
    """-1/(3 + d/2): the exponent of eps*(N) and of the error at eps* (THEORY.md section 4)."""
    return -1.0 / (3.0 + d / 2.0)


def _local_bias_slope(case: Case, eps: float) -> float:
    """d log bias / d log eps at eps (centred difference over a factor 1.25 each side, quadrature)."""
    lo, hi = eps / 1.25, eps * 1.25
    return float(np.log(fixed_eps_bias(case, hi)[0] / fixed_eps_bias(case, lo)[0]) / np.log(hi / lo))


def measure(case: Case, N_values, eps_values, seeds, *, n_rows: int = 400) -> dict:
    """Sweep the consistency error, then eps*(N), error(eps*), their fitted exponents and the local bias slope."""
    res = consistency_sweep(case, N_values, eps_values, seeds, n_rows=n_rows)
    best = res.best_eps()
    j = np.argmin(res.mean, axis=1)
    interior = bool(np.all((j > 0) & (j < len(res.eps_values) - 1)))
    exp_eps = res.best_eps_exponent()
    exp_err = fit_slope(res.N_values, res.best_error())
    beta = _local_bias_slope(case, float(np.exp(np.mean(np.log(best)))))
    return dict(result=res, best_eps=best, best_error=res.best_error(), exponent_eps=exp_eps, exponent_error=exp_err,
                interior=interior, beta=beta, effective=-1.0 / (2 * beta + 1 + case.dim / 2))


def _sizes(dim: int, quick: bool) -> dict:
    ratio = 10**0.1
    # full: eps* falls like N^-1/(3 + d/2), so the grids reach a factor 10^0.4 below the eps* measured at N = 1.024e6
    # (2026-12-02: 6.9e-4, 1.06e-3, 2.28e-3), which keeps every argmin inside them up to N = 1.024e7
    if dim == 1:
        return dict(N=[1000, 4000, 16000, 64000], eps=1e-3 * ratio ** np.arange(11), seeds=8) if quick else \
            dict(N=[1000, 4000, 16000, 64000, 256000, 1024000, 4096000], eps=2.5e-4 * ratio ** np.arange(18), seeds=16)
    full_N = [4000, 16000, 64000, 256000, 1024000, 4096000, 10240000]
    if dim == 2:
        return dict(N=[4000, 16000, 64000], eps=1.5e-3 * ratio ** np.arange(10), seeds=3) if quick else \
            dict(N=full_N, eps=3e-4 * ratio ** np.arange(18), seeds=8)
    return dict(N=[4000, 16000, 64000], eps=3e-3 * ratio ** np.arange(10), seeds=2) if quick else \
        dict(N=full_N, eps=6e-4 * ratio ** np.arange(18), seeds=6)


def _figure(cases, out) -> Figure:
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    ax_s, ax_b, ax_c = fig.subplots(1, 3)
    colors = ["C0", "C1", "C2"]
    for case, o, c in zip(cases, out, colors):
        res, d = o["result"], case.dim
        th = theory_exponent(d)
        ax_s.loglog(res.N_values, o["best_eps"], "o-", color=c,
                    label=f"d={d}: measured {o['exponent_eps'][0]:.3f}+-{o['exponent_eps'][1]:.3f}")
        add_slope(ax_s, res.N_values, th, o["best_eps"][0] * 1.15, f"d={d}: theory {th:.3f}", color=c)
        ax_b.loglog(res.N_values, o["best_error"], "s-", color=c,
                    label=f"d={d}: measured {o['exponent_error'][0]:.3f}+-{o['exponent_error'][1]:.3f}")
        add_slope(ax_b, res.N_values, th, o["best_error"][0] * 1.15, f"d={d}: theory {th:.3f}", color=c)
    ax_s.set_title("empirical best kernel scale eps*(N)\n(dashed: N^(-1/(3+d/2)))", fontsize=9)
    ax_s.set_ylabel("eps* (parabola-refined argmin)")
    ax_b.set_title("error at eps* (dashed: N^(-1/(3+d/2)))", fontsize=9)
    ax_b.set_ylabel("RMS consistency error at eps*")
    o, res = out[0], out[0]["result"]
    for i, n in enumerate(res.N_values):
        ax_c.errorbar(res.eps_values, res.mean[i], yerr=np.nan_to_num(res.ci[i]), marker=".", capsize=2, label=f"N = {n}")
        ax_c.axvline(o["best_eps"][i], color=f"C{i}", ls=":", lw=1)
    ax_c.set_xscale("log")
    ax_c.set_yscale("log")
    ax_c.set_xlabel("kernel scale eps")
    ax_c.set_ylabel("RMS consistency error")
    ax_c.set_title(f"{cases[0].label}: error vs eps, eps* dotted (95% CI)", fontsize=9)
    for ax in (ax_s, ax_b):
        ax.set_xlabel("number of points N")
    for ax in (ax_s, ax_b, ax_c):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.set_minor_formatter(NullFormatter())
    return fig


@register(NAME, "Best bandwidth: eps*(N) and error(eps*) exponents against -1/(3 + d/2), d = 1, 2, 3", order=30)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    """d = 1: eps* and error(eps*) exponents within 0.08 of -2/7. d = 2, 3: eps* exponent within 0.05 of the
    effective exponent -1/(2 beta + 1 + d/2) (beta the measured local bias slope); the asymptotic exponents
    -1/(3 + d/2) are checks within 0.05 in the full sweep and reported values in the quick one."""
    cases = [circle_case(), torus2_case(), torus3_case()]
    out = []
    for case in cases:
        sizes = _sizes(case.dim, quick)
        seeds = [1000 * seed + s for s in range(sizes["seeds"])]
        out.append({**measure(case, sizes["N"], sizes["eps"], seeds), "seeds": seeds})
    checks, arrays, config = [], {}, {"n_rows": 400}
    for case, o in zip(cases, out):
        d, res = case.dim, o["result"]
        th = theory_exponent(d)
        if d == 1:
            tol = 0.08
            checks += [
                Check.within(NAME, f"d={d}: exponent of eps*(N)", o["exponent_eps"][0], th, tol),
                Check.within(NAME, f"d={d}: exponent of error(eps*)", o["exponent_error"][0], th, tol),
            ]
        else:
            tol = 0.05
            checks += [
                Check.within(NAME, f"d={d}: exponent of eps*(N) vs effective -1/(2 beta+1+d/2), beta={o['beta']:.2f}",
                             o["exponent_eps"][0], o["effective"], tol),
            ]
            # the full sweep (N up to 1.024e6) reaches the regime where the asymptotic exponents hold within 0.05
            # (measured 2026-12-02: see the module docstring); the quick sweep (N <= 64000) does not, so it reports
            asymptotic = (lambda q, v: Check.report(NAME, q, v, th)) if quick else \
                (lambda q, v: Check.within(NAME, q, v, th, tol))
            checks += [asymptotic(f"d={d}: exponent of eps*(N) vs asymptotic -1/(3+d/2)", o["exponent_eps"][0]),
                       asymptotic(f"d={d}: exponent of error(eps*) vs asymptotic -1/(3+d/2)", o["exponent_error"][0])]
        checks.append(Check.equal(NAME, f"d={d}: every argmin inside the eps grid", float(o["interior"]), 1.0))
        arrays[f"d{d}"] = {
            "N_values": res.N_values, "eps_values": res.eps_values, "seeds": res.seeds, "errors": res.errors,
            "best_eps": o["best_eps"], "best_error": o["best_error"],
            "exponents": np.array([*o["exponent_eps"], *o["exponent_error"]]),
        }
        config[f"d{d}"] = {**case.to_config(), "N_values": res.N_values.tolist(), "eps_values": res.eps_values.tolist(),
                           "seeds": o["seeds"], "theory_exponent": th, "local_bias_slope_at_eps*": o["beta"],
                           "effective_exponent_-1/(2beta+1+d/2)": o["effective"], "tolerance": tol}
    config["exponents_layout"] = "eps* exponent, se, error exponent, se"
    return StudyResult(NAME, checks, arrays, config, _figure(cases, out))
