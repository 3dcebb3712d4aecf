"""Files and LaTeX runs: atomic writes, output checks, pdflatex with readable errors."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import SymRNNError

INSTALL_HINT = ("install a TeX distribution: on Debian or Ubuntu `apt-get install texlive-latex-base "
                "texlive-latex-recommended texlive-pictures latexmk`, elsewhere TeX Live "
                "(https://tug.org/texlive/) or MiKTeX")
LATEX_TIMEOUT = 300  # seconds for one LaTeX run


class OutputPathError(SymRNNError, ValueError):
    """The output path of a report cannot be written."""


class LatexNotFoundError(SymRNNError, RuntimeError):
    """A PDF was asked for but pdflatex is not installed (the .tex was written instead)."""

    def __init__(self, message, tex_path=None):
        super().__init__(message)
        self.tex_path = tex_path


class LatexError(SymRNNError, RuntimeError):
    """pdflatex failed; ``log_excerpt`` holds the error lines of its log."""

    def __init__(self, message, log_excerpt="", tex_path=None):
        super().__init__(message)
        self.log_excerpt = log_excerpt
        self.tex_path = tex_path


def check_writable(path) -> Path:
    """``path`` as a ``Path`` if a file can be written there; :class:`OutputPathError` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"The output {str(path)!r} is a directory; give a file name, "
                              f"e.g. {str(path / 'report.tex')!r}.")
    parent = path.parent
    if not parent.is_dir():
        raise OutputPathError(f"Cannot write {str(path)!r}: the directory {str(parent)!r} does not exist; "
                              f"create it first (mkdir -p {parent}).")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"Cannot write {str(path)!r}: the file is read-only; choose another path "
                              f"or make it writable.")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as exc:
        raise OutputPathError(f"Cannot write {str(path)!r}: {exc.strerror} in {str(parent)!r}; "
                              f"choose a writable directory.") from None
    os.close(fd)
    os.unlink(probe)
    return path


def write_atomic(path, data) -> Path:
    """Write ``data`` (str or bytes) to ``path`` through a temporary file in the same directory."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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
        """The ``Overfull \\hbox`` warnings of the run."""
        return [line for line in self.log.splitlines() if line.startswith("Overfull \\hbox")]


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
            try:
                done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                      errors="replace", timeout=LATEX_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise LatexError(f"{cmd[0]} did not finish within {LATEX_TIMEOUT} s.") from None
            log_path = source.with_suffix(".log")
            log = log_path.read_text(encoding="latin-1") if log_path.exists() else done.stdout
            if done.returncode != 0:
                excerpt = error_lines(log)
                raise LatexError(f"{cmd[0]} failed (exit status {done.returncode}):\n{excerpt}", excerpt)
        pdf = source.with_suffix(".pdf")
        if not pdf.exists():
            raise LatexError(f"{runs[0][0]} produced no PDF:\n{error_lines(log)}", error_lines(log))
        return CompileResult(pdf.read_bytes(), log)
