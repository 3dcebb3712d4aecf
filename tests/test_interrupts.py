"""Interrupted runs leave nothing behind: LaTeX's processes, half-written decay report folders."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import symrnn as sr
from symrnn.decay import plots, sweep, write_report

SCRIPT = textwrap.dedent("""
    import os, sys
    from symrnn.report.compile import _run_latex
    # a stand-in for latexmk: a shell that starts a child (pdflatex) and waits for it
    _run_latex(["sh", "-c", "sleep 60 & echo $! > child.pid; wait"], sys.argv[1], dict(os.environ))
""")


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_latex_run_kills_its_children(tmp_path, sig):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, stderr=subprocess.PIPE)
    pid_file = tmp_path / "child.pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())
    proc.send_signal(sig)
    proc.wait(timeout=20)
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the LaTeX stand-in's child outlived the interrupted run")


def small_sweep(cells):
    return sweep(cells, [1.0], H=2, D=1, T=20, grad_T=0, max_workers=1, progress=False)


def test_decay_report_never_mixes_two_runs(tmp_path, monkeypatch):
    out = tmp_path / "r"
    first = write_report(small_sweep(["lstm"]), out)
    assert first["paths_figure"].exists()
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "gradient_figure", broken)
    with pytest.raises(KeyboardInterrupt):
        write_report(small_sweep(["rnn-tanh"]), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the first run, untouched, nothing else
    monkeypatch.undo()
    second = write_report(small_sweep(["rnn-tanh"]), out)
    assert "paths_figure" not in second and not (out / "paths.png").exists()  # the first run's figure is gone
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in second.values())
