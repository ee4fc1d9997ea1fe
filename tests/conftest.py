from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Test-only workloads (tests/fixtures) are imported by trainer subprocesses by import path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
