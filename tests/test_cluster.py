"""Sweeps on executors and on a Dask cluster: cells computed elsewhere, written here, identical bit for bit."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from continuum_attention import Torus
from continuum_attention import compare
from continuum_attention import densities as D
from continuum_attention.problem import Problem
from continuum_attention.storage import SweepFile, read_cells

CIRCLE = Torus(1.0)
PROBLEM = Problem(CIRCLE, D.cosine(CIRCLE, 0.5, 1), None, lambda x: np.cos(2 * np.pi * x[:, 0]), 0.01)
GRID = dict(N_values=[500, 1000, 2000], eps_values=[2e-3, 5e-3], seeds=[0, 1])


def measure(N, eps, seed):
    return compare.consistency_error(PROBLEM, N, eps, seed)


def _serial(tmp_path):
    return compare.ConvergenceStudy(measure, **GRID, store=SweepFile(tmp_path / "serial.h5")).run(progress=False)


def _cells(path):
    return {k: np.asarray(v["errors"]).tobytes() for k, v in read_cells(path).items()}


def test_a_thread_pool_gives_the_serial_numbers(tmp_path):
    serial = _serial(tmp_path)
    with ThreadPoolExecutor(2) as pool:
        pooled = compare.ConvergenceStudy(measure, **GRID, store=SweepFile(tmp_path / "pool.h5")).run(
            progress=False, executor=pool)
    assert pooled.errors.tobytes() == serial.errors.tobytes()
    assert _cells(tmp_path / "pool.h5") == _cells(tmp_path / "serial.h5")


def test_an_executor_must_submit():
    with pytest.raises(TypeError, match="executor"):
        compare.ConvergenceStudy(measure, [100], [0.1]).run(progress=False, executor="dask")


@pytest.fixture(scope="module")
def cluster():
    import distributed  # the 'cluster' extra, which the README's test command installs
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as local, distributed.Client(local) as client:
        yield client


def test_a_two_worker_dask_cluster_gives_the_serial_numbers_in_the_same_file(tmp_path, cluster):
    serial = _serial(tmp_path)
    path = tmp_path / "dask.h5"
    # a serial run interrupted after its first cell, then resumed on the cluster: merged into the same file
    calls = []

    def interrupted(N, eps, seed):
        if len(calls) == 2:  # two seeds of the first cell done
            raise KeyboardInterrupt
        calls.append(N)
        return measure(N, eps, seed)

    with pytest.raises(KeyboardInterrupt):
        compare.ConvergenceStudy(interrupted, **GRID, store=SweepFile(path)).run(progress=False)
    assert len(read_cells(path)) == 1
    result = compare.ConvergenceStudy(measure, **GRID, store=SweepFile(path)).run(progress=False, executor=cluster)
    assert result.errors.tobytes() == serial.errors.tobytes()
    assert _cells(path) == _cells(tmp_path / "serial.h5")


def slow_measure(N, eps, seed):
    time.sleep(0.3)
    return compare.consistency_error(PROBLEM, N, eps, seed)


def test_killing_a_worker_mid_sweep_loses_nothing(tmp_path, cluster):
    serial = _serial(tmp_path)
    path = tmp_path / "killed.h5"
    pids = list(cluster.run(os.getpid).values())
    study = compare.ConvergenceStudy(slow_measure, **GRID, store=SweepFile(path))
    import threading

    killed = []

    def kill_one():
        while not path.exists():  # the first cell is written: both workers are busy with the next ones
            time.sleep(0.01)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(len(read_cells(path)))

    killer = threading.Thread(target=kill_one)
    killer.start()
    result = study.run(progress=False, executor=cluster)
    killer.join()
    assert killed and killed[0] < 6, killed  # the worker died mid-sweep, with cells still to come
    assert result.errors.tobytes() == serial.errors.tobytes()
    assert _cells(path) == _cells(tmp_path / "serial.h5")


STUDY = """
[problem]
domain = { type = "Torus", lengths = [1.0] }
density = { type = "cosine", amplitude = 0.5, wavevector = [1] }
initial = "cos(2*pi*x)"

[study]
quantity = "consistency"
N = [500, 1000]
eps = [2e-3, 5e-3]
seeds = 2

[output]
dir = "OUT"
"""


def test_study_and_reproduce_on_a_local_dask_cluster_match_serial_runs(tmp_path):
    import subprocess
    import sys

    from continuum_attention import storage

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "continuum_attention.cli", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc

    for name, extra in (("serial", []), ("dask", ["--dask-local", "2"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "s.toml").write_text(STUDY.replace("OUT", str(tmp_path / name)))
        cli("study", str(tmp_path / name / "s.toml"), *extra)
        cli("reproduce", "--quick", "--only", "pde_verification", "heat_form", "--out", str(tmp_path / name), *extra)
    assert _cells(tmp_path / "dask" / "results" / "s.h5") == _cells(tmp_path / "serial" / "results" / "s.h5")
    for study in ("pde_verification", "heat_form"):
        a, _ = storage.load(tmp_path / "dask" / "results" / f"{study}.h5")
        b, _ = storage.load(tmp_path / "serial" / "results" / f"{study}.h5")
        assert sorted(a) == sorted(b)
        for key in a:
            if not isinstance(a[key], dict):
                assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key
    from continuum_attention.cli import main

    assert main(["study", str(tmp_path / "serial" / "s.toml"), "--dask-local", "0"]) == 2
