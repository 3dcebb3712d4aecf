"""Files and LaTeX runs: atomic writes, output checks, pdflatex with readable errors."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import LatexError, LatexNotFoundError, OutputPathError  # noqa: F401 (re-exported)
from ..fileio import check_writable, write_atomic  # noqa: F401 (re-exported)

INSTALL_HINT = ("install a TeX distribution: on Debian or Ubuntu `apt-get install texlive-latex-base "
                "texlive-latex-recommended texlive-pictures latexmk`, elsewhere TeX Live "
                "(https://tug.org/texlive/) or MiKTeX")
LATEX_TIMEOUT = 300  # seconds for one LaTeX run


def latex_available() -> bool:
    return shutil.which("pdflatex") is not None


def error_lines(log: str, after: int = 4) -> str:
    """The lines of a LaTeX log that start with ``!``, each with the ``after`` lines that follow."""
    lines = log.splitlines()
    picked = []
    for i, line in enumerate(lines):
        if line.startswith("!"):
            picked += lines[i:i + after + 1] + ["..."]
    return "\n".join(picked) if picked else "\n".join(lines[-15:])


@dataclass
class CompileResult:
    pdf: bytes
    log: str

    def overfull_lines(self) -> list:
        """The ``Overfull \\hbox`` (a line too wide) and ``Overfull \\vbox`` (a box taller than the page)
        warnings of the run."""
        return [line for line in self.log.splitlines() if line.startswith(("Overfull \\hbox", "Overfull \\vbox"))]


def compile_pdf(tex: str, name: str = "report") -> CompileResult:
    """Compile ``tex`` in a temporary directory (latexmk, else pdflatex twice)."""
    if not latex_available():
        raise LatexNotFoundError(f"pdflatex is not installed; {INSTALL_HINT}.")
    env = dict(os.environ, max_print_line="10000", SOURCE_DATE_EPOCH="0", FORCE_SOURCE_DATE="1")
    with tempfile.TemporaryDirectory(prefix="symrnn-latex-") as tmp:
        source = Path(tmp) / f"{name}.tex"
        source.write_text(tex, encoding="utf-8")
        flags = ["-interaction=nonstopmode", "-halt-on-error"]
        if shutil.which("latexmk"):
            runs = [["latexmk", "-pdf", "-silent", *flags, source.name]]
        else:
            runs = [["pdflatex", *flags, source.name]] * 2
        for cmd in runs:
            done = _run_latex(cmd, tmp, env)
            log_path = source.with_suffix(".log")
            log = log_path.read_text(encoding="latin-1") if log_path.exists() else done.stdout
            if done.returncode != 0:
                excerpt = error_lines(log)
                raise LatexError(f"{cmd[0]} failed (exit status {done.returncode}):\n{excerpt}", excerpt)
        pdf = source.with_suffix(".pdf")
        if not pdf.exists():
            raise LatexError(f"{runs[0][0]} produced no PDF:\n{error_lines(log)}", error_lines(log))
        return CompileResult(pdf.read_bytes(), log)


def _run_latex(cmd, cwd, env):
    """Run one LaTeX command in a session of its own; whatever ends the wait (the timeout, Ctrl-C, a
    SIGTERM sent to symrnn) kills the whole session, latexmk's pdflatex included, before the temporary
    folder is removed."""
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, errors="replace", start_new_session=True)
    restore = _sigterm_raises()
    try:
        stdout, stderr = process.communicate(timeout=LATEX_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_session(process)
        raise LatexError(f"{cmd[0]} did not finish within {LATEX_TIMEOUT} s.") from None
    except BaseException:
        _kill_session(process)
        raise
    finally:
        restore()
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


def _kill_session(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.communicate()


def _sigterm_raises():
    """While LaTeX runs, SIGTERM raises ``SystemExit`` (so the cleanup runs); returns the restorer."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return lambda: None  # somebody else handles it

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
