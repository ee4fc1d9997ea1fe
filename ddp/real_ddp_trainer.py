"""Entry point of the DDP trainer, one process per rank.

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint node1:29400 \\
        -m ddp.real_ddp_trainer --config ddp/configs/phase2a.yaml
    python -m ddp.real_ddp_trainer --config ddp/configs/phase1.yaml     # one process, for development

Exit codes: 0 completed or stopped cleanly, 2 bad configuration or setup (nothing written when the config
alone shows it), 3 non-finite loss (policy stop), 4 the torchrun agent died (ddp/orphan_guard.py).

Under the warm supervisor (`python -m ddp.warm_supervisor torchrun ...`, ddp/warm_client.py) the rank is
forked from the node's warm pool, which has torch and the trainer imported already: a restart then skips
the seconds every rank spends importing them. This module imports nothing heavy itself, so that deciding
costs nothing.
"""

from __future__ import annotations

import os
import sys

from ddp.warm_client import run_through_pool, warm_start_requested


def main(argv: list[str] | None = None) -> int:
    # Imported here: a rank run through the warm pool never imports torch in this process.
    from ddp.rank_main import main as run_rank

    return run_rank(argv)


if __name__ == "__main__":
    code = run_through_pool(sys.argv[1:]) if warm_start_requested(os.environ) else None
    sys.exit(main() if code is None else code)
