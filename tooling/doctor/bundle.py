"""The doctor's tar.gz for a bug report: per node its collected document (status files, process states),
every stack and log/journal excerpt as a file of its own, and the findings. Written under a temporary name
and renamed, so a bundle that exists is whole. Holds what the ranks wrote, never inventory secrets."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from tooling.doctor.diagnosis import NodeEvidence


def _add(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(data))


def _node_files(node: NodeEvidence) -> dict[str, str]:
    files: dict[str, str] = {}
    document = dict(node.document)
    for rank in document.get("ranks") or []:
        stack = (rank.get("process") or {}).get("stack")
        if stack:
            files[f"py-spy-rank{rank.get('rank')}.txt"] = stack
    for agent in document.get("agents") or []:
        if agent.get("stack"):
            files[f"py-spy-agent{agent.get('pid')}.txt"] = agent["stack"]
    files.update(document.pop("files", None) or {})
    files["evidence.json"] = json.dumps({"host": node.host, "error": node.error, **document}, indent=2)
    return files


def write(directory: Path, nodes: list[NodeEvidence], report: dict[str, Any]) -> Path:
    """The bundle's path: `directory`/doctor-<time>.tar.gz, complete or absent."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"doctor-{time.strftime('%Y%m%dT%H%M%S')}"
    path = directory / f"{stem}.tar.gz"
    fd, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add(tar, f"{stem}/findings.json", json.dumps(report, indent=2))
            for node in nodes:
                for name, text in _node_files(node).items():
                    _add(tar, f"{stem}/{node.host}/{Path(name).name}", text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
