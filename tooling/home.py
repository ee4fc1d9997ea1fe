"""The one state root of the toolkit (`TOOLING_HOME`) and every directory under it.

Deployment records, gate decisions, run directories, soaks, sweeps, reports, the locked production
configs, check snapshots and ansible-runner artifacts all live under one root, so a command finds the
same state whatever directory it is started from, and no command writes into the source tree.

The root is `$TOOLING_HOME` (set by `tooling --home DIR` too), else `$XDG_STATE_HOME/ddp-toolkit`, else
`~/.local/state/ddp-toolkit`. The XDG *state* directory, not data or cache: decisions, deployment
records and artifacts are this control machine's operational history, they must survive a cache clean-up,
but they are neither configuration nor portable documents (the spec's own examples: logs, history).

Every path is computed when asked for, never at import: `--home` and the tests change the environment
after the modules are loaded.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ddp.config_errors import ConfigError

HOME_ENV = "TOOLING_HOME"
KEEP_ARTIFACTS_ENV = "TOOLING_KEEP_ARTIFACTS"
DEFAULT_KEEP_ARTIFACTS = 20
APP_NAME = "ddp-toolkit"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The directory the toolkit used before it had a home; a hint names it, nothing moves it.
LEGACY_DIR = "runs"
LEGACY_NOTE = ".legacy-runs-noted"
# What ansible-runner private data dirs are named (tooling.runner: <UTC stamp>-<label>). Rotation removes
# only these, so pointing a runs directory at a folder with other things in it can never delete them.
_ARTIFACT_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-")


def root() -> Path:
    """The state root, absolute: $TOOLING_HOME, else $XDG_STATE_HOME/ddp-toolkit, else ~/.local/state/..."""
    explicit = os.environ.get(HOME_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME", "").strip()
    # The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return (base / APP_NAME).resolve()


def _sub(name: str) -> Path:
    return root() / name


def deployments() -> Path:
    """Records of what `tooling deploy` started, one per inventory."""
    return _sub("deployments")


def doctor() -> Path:
    """`tooling doctor`'s bundles (tar.gz for a bug report)."""
    return _sub("doctor")


def quarantine() -> Path:
    """Quarantined nodes (`tooling deploy --exclude`), one list per inventory."""
    return _sub("quarantine")


def decisions() -> Path:
    """Gate decision records (JSON + Markdown)."""
    return _sub("decisions")


def runs() -> Path:
    """Run directories made on this machine (local rehearsals, local soaks and sweep trials)."""
    return _sub("runs")


def soak() -> Path:
    """Soak states and records."""
    return _sub("soak")


def sweeps() -> Path:
    """Sweep plans, trials and results."""
    return _sub("sweeps")


def reports() -> Path:
    """Performance reports and weekly briefings."""
    return _sub("reports")


def production() -> Path:
    """The phases' locked production configs (`tooling sweep --lock`)."""
    return _sub("production")


def checks() -> Path:
    """Daily snapshots of `tooling check`."""
    return _sub("checks")


def ansible() -> Path:
    """ansible-runner private data dirs of deploy, stop and the cluster jobs (rotated)."""
    return _sub("ansible")


def verify() -> Path:
    """ansible-runner private data dirs of `tooling verify-node` (rotated)."""
    return _sub("verify")


def keep_artifacts() -> int:
    """How many ansible-runner artifact dirs a runs directory keeps ($TOOLING_KEEP_ARTIFACTS, default 20)."""
    raw = os.environ.get(KEEP_ARTIFACTS_ENV, "").strip()
    if not raw:
        return DEFAULT_KEEP_ARTIFACTS
    try:
        keep = int(raw)
    except ValueError:
        keep = -1
    if keep < 1:
        # ConfigError, not ToolingError: this module sits below the console layer; the CLI's edge reports it.
        raise ConfigError(KEEP_ARTIFACTS_ENV, [f"{raw!r}: expected a whole number of 1 or more"])
    return keep


def rotate_artifacts(runs_dir: Path, keep: int | None = None) -> list[Path]:
    """Delete the oldest artifact dirs in runs_dir so that, with the one about to be made, `keep` remain.

    Only directories named like ansible-runner private data dirs are counted or removed; their names
    start with a UTC stamp, so name order is age order. Returns what was removed.
    """
    keep = keep_artifacts() if keep is None else keep
    if not runs_dir.is_dir():
        return []
    found = sorted(p for p in runs_dir.iterdir() if p.is_dir() and _ARTIFACT_NAME.match(p.name))
    doomed = found[: max(0, len(found) - (keep - 1))]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def legacy_dirs(cwd: Path | None = None) -> list[Path]:
    """Old ./runs state directories (the checkout's and the working directory's) not yet pointed out."""
    candidates = {(base / LEGACY_DIR).resolve() for base in (PROJECT_ROOT, cwd or Path.cwd())}
    note = root() / LEGACY_NOTE
    try:
        noted = set(note.read_text(encoding="utf-8").splitlines())
    except OSError:
        noted = set()
    known = ("deployments", "decisions", "soak", "sweeps", "reports", "ansible", "verify", "checks")
    return sorted(
        path
        for path in candidates
        if str(path) not in noted and path != root() and any((path / name).is_dir() for name in known)
    )


def note_legacy(paths: list[Path]) -> None:
    """Remember that these old directories were pointed out, so the hint is given once."""
    note = root() / LEGACY_NOTE
    note.parent.mkdir(parents=True, exist_ok=True)
    with note.open("a", encoding="utf-8") as handle:
        handle.writelines(f"{path}\n" for path in paths)
