"""tooling/probes/collective_bw.py on two local Gloo processes (loopback), and its answer parsed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tooling.probes import collective_bw
from tooling.verify import parsers as p

PROBE = Path(collective_bw.__file__)
FIXTURE = Path(__file__).parent / "fixtures" / "verify" / "collective_bw_1node_2proc.txt"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_two_ranks(*args: str) -> str:
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_RANK=str(rank),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(PROBE), "--iters", "2", "--warmup", "1", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert outputs[1][0].strip() == "", "only rank 0 answers"
    return outputs[0][0]


def test_all_reduce_and_all_to_all_over_two_gloo_processes() -> None:
    out = _run_two_ranks("--sizes", "4096,65536", "--collectives", "all_reduce,all_to_all")
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["probe"] == "collective_bw" and doc["world_size"] == 2
    assert [r["size_bytes"] for r in doc["results"]] == [4096, 65536]
    reduce_ = p.parse_gloo_probe(out)
    to_all = p.parse_gloo_all_to_all(out)
    assert to_all is not None
    assert reduce_.busbw_gbs > 0 and to_all.busbw_gbs > 0
    # n = 2: all_reduce busbw = algbw, all_to_all busbw = algbw / 2 (nccl-tests' factors).
    assert reduce_.busbw_gbs == pytest.approx(reduce_.algbw_gbs, abs=1e-4)
    assert to_all.busbw_gbs == pytest.approx(to_all.algbw_gbs / 2, abs=1e-4)


def test_all_reduce_alone_keeps_the_old_answer() -> None:
    out = _run_two_ranks("--sizes", "4096")
    assert p.parse_gloo_all_to_all(out) is None
    assert p.parse_gloo_probe(out).size_bytes == 4096


def test_recorded_answer_parses() -> None:
    text = FIXTURE.read_text()
    to_all = p.parse_gloo_all_to_all(text)
    assert to_all is not None and to_all.size_bytes == 16777216 and to_all.world_size == 2
    assert p.parse_gloo_probe(text).busbw_gbs > 0


def test_bad_arguments_are_refused() -> None:
    assert collective_bw.bus_factor(4, "all_to_all") == 0.75
    assert collective_bw.bus_factor(4) == 1.5
    with pytest.raises(SystemExit):
        collective_bw.main(["--collectives", "all_to_all"])  # all_reduce is always measured
    with pytest.raises(SystemExit):
        collective_bw.main(["--collectives", "broadcast"])
    with pytest.raises(p.ParseError, match="results"):
        p.parse_gloo_all_to_all('{"world_size": 2, "all_to_all": {}}')
