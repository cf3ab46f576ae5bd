"""The compiled controller kernel: built once per source/flags hash into the per-user cache,
announced while it compiles, clear errors without a compiler or with a malformed table."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from psa.sim import controller as ctl
from psa.sim import state


def _psa(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from psa.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_first_run_compiles_once_and_says_so(tmp_path):
    env = {**os.environ, "PSA_CACHE_DIR": str(tmp_path / "cache")}
    first = _psa("dram", "--compile", env=env)
    assert first.returncode == 0, first.stderr
    assert "compiling the DRAM kernel" in first.stderr + first.stdout
    libs = list((tmp_path / "cache").glob("dram-controller-*.so"))
    assert len(libs) == 1
    second = _psa("dram", "--compile", env=env)
    assert second.returncode == 0, second.stderr
    assert "compiling" not in second.stderr + second.stdout  # loaded from the cache
    assert list((tmp_path / "cache").glob("dram-controller-*.so")) == libs


def test_cache_key_follows_source_and_constants(monkeypatch, tmp_path):
    monkeypatch.setenv("PSA_CACHE_DIR", str(tmp_path))
    base = ctl.kernel_path()
    assert base.parent == tmp_path
    text = ctl._prelude()
    # every table column the kernel indexes is defined from the Python constants
    for name in ("Q_FB", "Q_DONE", "N_Q", "B_VERSION", "R_HIST", "C_WAKE", "QS_B", "N_QS",
                 "K_PTR", "K_NRFCSB", "L_REQ", "ACT", "REFSB", "SLOT_ROW", "RAMULATOR"):
        assert f"#define {name} (" in text, name
    assert f"#define N_Q ({state.N_Q}LL)" in text
    monkeypatch.setenv("CXX", "clang++-not-here")
    assert ctl.kernel_path() != base  # another compiler, another library


def test_missing_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PSA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    monkeypatch.setattr(ctl, "_LIB", None)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        ctl.kernel(say=lambda msg: None)
    assert not list(tmp_path.glob("*.so"))


def test_tables_must_be_contiguous_int64():
    st = state.ControllerState.new(state.Layout(1, 1, 4, 16), 4, 4, 1, 1000, True)
    cfg = np.zeros(ctl.N_K, np.int64)
    rules = np.zeros((1, 4), np.int64)
    req = np.zeros((4, state.N_Q), np.int64)
    log = np.zeros((1, ctl.N_L), np.int64)
    with pytest.raises(TypeError, match="req must be a C-contiguous int64"):
        ctl.run(4, cfg, rules, req[::2], st.nxt, st.bank, st.rank, st.chan, st.qs, st.heap,
                st.scal, log)
    with pytest.raises(TypeError, match="nxt must be a C-contiguous int64"):
        ctl.run(4, cfg, rules, req, st.nxt.astype(np.int32), st.bank, st.rank, st.chan, st.qs,
                st.heap, st.scal, log)


def test_kernel_source_is_package_data():
    """A normal (non-editable) install ships controller.cpp beside controller.py."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    root = Path(__file__).resolve().parents[2]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = cfg["package-data"]["psa.sim"]
    assert cfg["package-dir"]["psa.sim"] == "sim"
    for src in (root / "sim").glob("*.cpp"):
        assert any(fnmatch.fnmatch(src.name, p) for p in patterns), src.name
    assert ctl._SOURCE.exists()
