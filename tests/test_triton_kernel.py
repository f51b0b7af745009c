"""The fused Triton kernel (issue 11, the torus on the GPU), run on the CPU by Triton's interpreter.

Triton reads TRITON_INTERPRET when it is first imported, and other tests may import it first (torch.compile
does), so the interpreted checks run in a child process with the variable set; the GPU is never needed.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHILD = textwrap.dedent('''
    import json
    import numpy as np, torch
    from continuum_attention import AttentionOperator, Torus
    from continuum_attention.attention import _kernels, _triton
    from continuum_attention.attention._torch import TorchKernels

    out = {"kernel": [], "operator": {}}
    rng = np.random.default_rng(0)
    T = lambda a, dtype=torch.float64: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
    for d, period in ((1, [1.0]), (2, [1.0, 1.0]), (3, [1.0, 0.0, 2.0]), (2, [0.0, 0.0])):
        A, B = rng.random((150, d)), rng.random((130, d)) * 1.5
        BT, per = np.ascontiguousarray(B.T), np.array(period)
        r, s, V = 0.1 * rng.random(150), 0.1 * rng.random(130), rng.standard_normal((130, 2))
        ref = _kernels.kernel_sum(0, A, BT, np.eye(d), False, per, 20.0, r, s, V)
        scale = np.abs(ref).max()
        for dtype in (torch.float64, torch.float32):
            got = _triton.squared_sum(torch, T(A, dtype), T(BT, dtype), T(per, dtype), 20.0, T(r, dtype),
                                      T(s, dtype), T(V, dtype)).double().numpy()
            out["kernel"].append([d, str(dtype), float(np.abs(got - ref).max() / scale)])
    x = rng.random((400, 2))
    H = np.cos(2 * np.pi * x[:, 0])
    kw = dict(domain=Torus([1.0, 1.0]), truncate=False, dense_budget=0)
    ref = AttentionOperator(x, 2e-3, **kw)
    for dtype in ("float64", "float32"):
        op = AttentionOperator(x, 2e-3, backend="torch", device="cpu", dtype=dtype, **kw)
        out["operator"][dtype] = {"fused": op._engine.k.fused,
                                  "apply": float(np.abs(op.apply(H) - ref.apply(H)).max()),
                                  "transpose": float(np.abs(op.apply_transpose(H) - ref.apply_transpose(H)).max())}
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def interpreted():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_fused_kernel_matches_the_numba_lanes(interpreted):
    for d, dtype, err in interpreted["kernel"]:
        if dtype == "torch.float64":
            assert err < 5e-15, (d, err)  # reaches 7.7e-16 relative (minimum image on 1, 2, 3 axes, or none)
        else:
            assert err < 3e-6, (d, err)  # float32: reaches 4.7e-7 relative


def test_the_torus_operator_runs_fused_and_matches_numba(interpreted):
    f64, f32 = interpreted["operator"]["float64"], interpreted["operator"]["float32"]
    assert f64["fused"] == f32["fused"] == "triton-interpreted"
    assert f64["apply"] < 5e-15 and f64["transpose"] < 5e-15  # issue 11 asks 1e-12; reaches 6.7e-16
    assert f32["apply"] < 3e-6 and f32["transpose"] < 3e-6  # float32: reaches 2.9e-7


def test_the_fused_path_is_off_on_the_cpu_without_the_interpreter(monkeypatch):
    from continuum_attention.attention._torch import TorchKernels

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert TorchKernels("cpu", "float64").fused is None
