"""`dcgmi diag -r N -j`: each diagnostic test's result on each GPU.

The JSON has changed between DCGM releases, and each variant is read:
- the root key is "DCGM GPU Diagnostic" up to 3.x and "DCGM Diagnostic" from 4.0 on, both holding
  "test_categories" > "tests" > "results";
- a result names its GPUs as "gpu_ids" (a string "0,1,2,3" covering several GPUs, or one number), "gpu_id",
  or, from 4.0 on, "entity_group": "GPU" with "entity_id";
- statuses are spelled PASS / Pass / pass (also Fail, Warn, Skip, "Not Run");
- "warnings" is a list of strings (old releases), of {"warning": text, "error_id": n, ...} objects, or null;
- dcgmi may print a line ("Successfully ran diagnostic for group.") before the document, and a test list may
  hold nulls.
A document with "runtime_error" is DCGM saying it could not run the diagnostic: kept as data, not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tooling.verify.parsers import ParseError

TOOL = "dcgmi diag"
ROOT_KEYS = ("DCGM Diagnostic", "DCGM GPU Diagnostic")
# DCGM's words -> the verdict words verify-node uses; anything else is kept as written and judged a failure
# to read, never a pass.
STATUSES = {
    "pass": "PASS",
    "fail": "FAIL",
    "warn": "WARN",
    "warning": "WARN",
    "skip": "SKIP",
    "not run": "SKIP",
}


@dataclass(frozen=True)
class DiagResult:
    category: str
    test: str
    gpus: tuple[int, ...]  # empty: DCGM named no GPU (a node-wide result)
    status: str  # PASS, FAIL, WARN, SKIP, or DCGM's own word when it is none of them
    messages: tuple[str, ...]  # DCGM's warnings (why it failed, warned or skipped)


@dataclass(frozen=True)
class DcgmDiag:
    version: str | None
    results: list[DiagResult] = field(default_factory=list)
    runtime_error: str | None = None

    @property
    def tests(self) -> list[tuple[str, str]]:
        """(category, test) in the order DCGM ran them."""
        return list(dict.fromkeys((r.category, r.test) for r in self.results))


def _document(text: str) -> dict[str, Any]:
    body = text.strip()
    if not body:
        raise ParseError(TOOL, "no output")
    start = body.find("{")
    if start < 0:
        raise ParseError(TOOL, f"no JSON document in the output: {body.splitlines()[0][:200]!r}")
    try:
        data = json.loads(body[start:])
    except json.JSONDecodeError as exc:
        raise ParseError(TOOL, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ParseError(TOOL, "the JSON is not an object")
    return data


def _gpus(result: dict[str, Any]) -> tuple[int, ...]:
    if "entity_id" in result:
        if str(result.get("entity_group", "GPU")).upper() != "GPU":
            return ()
        raw: Any = result["entity_id"]
    else:
        raw = result.get("gpu_ids", result.get("gpu_id"))
    if raw is None:
        return ()
    if isinstance(raw, int):
        return (raw,)
    try:
        return tuple(int(part) for part in str(raw).split(",") if part.strip())
    except ValueError:
        raise ParseError(TOOL, f"unreadable GPU ids {raw!r}") from None


def _messages(result: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for item in result.get("warnings") or []:
        if isinstance(item, dict):
            text = str(item.get("warning") or "").strip()
            code = item.get("error_id")
            if text:
                found.append(f"{text} (DCGM error {code})" if code is not None else text)
        elif item:
            found.append(str(item).strip())
    return tuple(found)


def _status(word: Any) -> str:
    text = str(word or "").strip()
    return STATUSES.get(text.lower(), text or "?")


def parse_dcgmi_diag(text: str) -> DcgmDiag:
    data = _document(text)
    root = next((data[k] for k in ROOT_KEYS if isinstance(data.get(k), dict)), None)
    if root is None:
        raise ParseError(TOOL, f"expected a {' or '.join(repr(k) for k in ROOT_KEYS)} object")
    metadata = data.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    version = root.get("version") or metadata.get("version")
    runtime_error = root.get("runtime_error") or data.get("runtime_error")
    categories = root.get("test_categories")
    if categories is None and runtime_error:
        return DcgmDiag(str(version) if version else None, [], str(runtime_error))
    if not isinstance(categories, list):
        raise ParseError(TOOL, "no test_categories list")
    results: list[DiagResult] = []
    for category in categories:
        if not isinstance(category, dict):
            continue
        header = str(category.get("category") or "?")
        for test in category.get("tests") or []:
            if not isinstance(test, dict):
                continue  # dcgmi has written nulls between tests
            name = str(test.get("name") or "?")
            for result in test.get("results") or []:
                if isinstance(result, dict):
                    results.append(
                        DiagResult(
                            header, name, _gpus(result), _status(result.get("status")), _messages(result)
                        )
                    )
    if not results and not runtime_error:
        raise ParseError(TOOL, "the document lists no test results")
    return DcgmDiag(str(version) if version else None, results, str(runtime_error) if runtime_error else None)
