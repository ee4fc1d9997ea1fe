"""Dashboard ddp-ranks.

Which ranks and nodes answer, restarts, progress, which rank is slow, and the run each rank belongs to.
"""

from __future__ import annotations

from tooling.dashboards.common import (
    JOB,
    NODE,
    RANK,
    TRAINER,
    AnyPanel,
    query,
    state_timeline_panel,
    table_panel,
    timeseries_panel,
)


def panels() -> tuple[AnyPanel, ...]:
    return (
        state_timeline_panel(
            "Rank endpoints up",
            (query(f"up{{{TRAINER}}}", "{{node}} local rank {{local_rank}}"),),
            "TrainerRankDown pages when an endpoint is not scraped for 1m past its node's start grace.",
        ),
        state_timeline_panel(
            "Node exporters up",
            (query(f"up{{{NODE}}}", "{{node}}"),),
            "NodeDown pages when a node's exporter is not scraped for 2m.",
        ),
        timeseries_panel(
            "Ranks up / expected",
            (
                query(f"job:trainer_ranks_up:sum{{{JOB}}}", "up"),
                query(f"job:trainer_ranks:count{{{JOB}}}", "expected"),
                query(f"job:node_exporters_up:sum{{{JOB}}}", "node exporters up"),
            ),
            min=0,
            decimals=0,
        ),
        timeseries_panel(
            "Worker group restarts",
            (query(f"max by (node) (trainer_restart_count{{{TRAINER}}})", "{{node}}"),),
            "torchrun restarts of each node's worker group since the run started.",
            min=0,
            decimals=0,
        ),
        timeseries_panel(
            "Current step per rank",
            (query(f"trainer_step{{{TRAINER}}}", RANK),),
            "A flat line while the others climb is a stalled rank (TrainerStalled after 10m).",
            decimals=0,
        ),
        timeseries_panel(
            "Compute per step against the median rank's",
            (query(f"trainer_compute_ratio_to_median{{{TRAINER}}}", RANK),),
            "Each rank's own work per step (the step less its wait in the all-reduce) over the median "
            "rank's. Above 1 + metrics.straggler_margin (default 1.2) the rank is a straggler "
            "(TrainerStragglerRank after 1m); the others then wait for it.",
            min=0,
        ),
        timeseries_panel(
            "Compute and all-reduce wait per step",
            (
                query(f"trainer_compute_seconds{{{TRAINER}}}", f"{RANK} compute"),
                query(f"trainer_collective_wait_seconds{{{TRAINER}}}", f"{RANK} wait"),
            ),
            "Wait = from the rank's last gradient bucket to the all-reduce's end. A slow network raises "
            "every rank's wait with compute unchanged; a slow rank raises its own compute and its peers' "
            "wait.",
            unit="s",
            min=0,
        ),
        timeseries_panel(
            "Worker uptime",
            (query(f"time() - trainer_start_time_seconds{{{TRAINER}}}", RANK),),
            unit="s",
            min=0,
        ),
        timeseries_panel(
            "Round trip between nodes",
            (query(f"max by (node, peer) (trainer_link_rtt_seconds{{{TRAINER}}})", "{{node}} -> {{peer}}"),),
            "A TCP handshake from each node to every other, every metrics.link_probe_every_s. A link whose "
            "round trip grows several-fold while compute stays balanced is slow (TrainerSlowLink); when "
            "several are, the node they share is at fault.",
            unit="s",
            min=0,
            width=24,
        ),
        table_panel(
            "Run of each rank",
            (query(f"trainer_info{{{TRAINER}}}", instant=True, table=True),),
            "Run name, backend and world size each rank reports; all rows should agree.",
            width=24,
        ),
    )
