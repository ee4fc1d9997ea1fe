"""The "Examples" shown at the end of every command's --help, kept in one place.

Each entry is what an operator types, one command line per line, with a few words on what it is for.
tests/unit/test_cli_help.py checks that every command has an entry and that every option an example
names exists on its command, so an example cannot outlive a renamed option.
"""

from __future__ import annotations

RUN = "~/.local/state/ddp-toolkit/runs/<run>"

EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "verify-node": (
        ("tooling verify-node --phase 2a", "every node of phase 2a, against the production profile"),
        ("tooling verify-node gpu-01 --phase 2a --level quick", "one node, the seconds-long checks only"),
        (
            "tooling verify-node --phase 1 --profile sandbox",
            "the sandbox's nodes, against the sandbox profile",
        ),
        (
            "tooling verify-node --phase 2c --pairs all --json",
            "every node pair both ways: the Gb/s matrix, asymmetry and the slow node or link named",
        ),
    ),
    "deploy": (
        (
            "tooling deploy --phase 2a --plan",
            "what it would do per node (torchrun line, environment, Ansible's changes); changes nothing",
        ),
        ("tooling deploy --phase 2a --plan --offline", "the same without connecting to any node"),
        ("tooling deploy --phase 2a --plan --json", "the plan as one JSON document"),
        ("tooling deploy --phase 2a", "provision, verify and launch phase 2a"),
        (
            "tooling deploy --phase 2b --exclude node3 --reason 'ECC errors'",
            "go on without node3 from the newest checkpoint; it stays out until verify-node passes on it",
        ),
    ),
    "status": (
        ("tooling status", "the latest deployment's ranks: steps, compute vs. the median, stragglers"),
        ("tooling status --watch", "the same, redrawn every 5 s until Ctrl-C"),
        ("tooling status --json", "one JSON document with every node's ranks"),
        ("tooling status -i inventory/production", "a deployment of another inventory"),
    ),
    "doctor": (
        (
            "tooling doctor --phase 2a",
            "is the latest 2a run hung? which rank, which node, why; a tar.gz bundle",
        ),
        ("tooling doctor --phase 2a --now --json", "diagnose at once, without waiting for the stall to last"),
        ("tooling doctor --local --run runs/ddp-run", "the same for a run on this machine (`tooling run`)"),
        ("tooling doctor --local --run runs/ddp-run --rendezvous node1:29400", "also check that endpoint"),
    ),
    "stop": (
        ("tooling stop", "stop the latest deployment's job (asks first on a terminal)"),
        ("tooling stop --timeout 120 --yes", "no question; two minutes for the final checkpoint"),
    ),
    "logs": (
        ("tooling logs", "the last lines of every rank of the latest deployment"),
        ("tooling logs --rank 5 -f", "rank 5's output as it comes, until Ctrl-C"),
        ("tooling logs --node node2 -n 100", "node2's ranks, the last 100 lines of each"),
    ),
    "gate": (
        (f"tooling gate --phase 2a --run {RUN}", "judge a finished run against phase 2a's criteria"),
        (f"tooling gate --phase 2a --run {RUN} --json", "the verdict as one JSON document"),
        (f"tooling gate --phase 2a --run {RUN} --no-record", "judge without recording a decision"),
    ),
    "phases": (
        ("tooling phases", "every phase, its gate decision and what comes next"),
        ("tooling phases --json", "the same as one JSON document"),
    ),
    "forecast": (
        ("tooling forecast --phase 2b", "phase 2b from the newest runs of 1 and 2a and verify-node's busbw"),
        (
            "tooling forecast --phase 2b --from RUN1 --from RUN2A --compare RUN2B",
            "fit on runs of 1 and 2a (directories), then the error against a measured run of 2b",
        ),
        ("tooling forecast --phase 2c --busbw 1.2 --json", "with a bandwidth measured elsewhere, as JSON"),
    ),
    "report": (
        (f"tooling report --phase 2a --run {RUN}", "the run's report"),
        ("tooling report --weekly", "the executive briefing from the decision records"),
        ("tooling report --phase 2a --out reports/2a", "the newest run's report, into a chosen directory"),
        ("tooling report --weekly --json", "what the briefing shows, as one JSON document"),
    ),
    "soak": (
        ("tooling soak --phase 2c --duration 72h", "a 72-hour soak of phase 2c on the cluster"),
        ("tooling soak --phase 1 --duration 1h --local", "a short soak on this machine"),
        (
            "tooling soak --phase 2c --resume <soak>",
            "carry on watching an interrupted soak to its planned end",
        ),
    ),
    "check": (
        ("tooling check", "every schedule's checks against the cluster's Prometheus"),
        ("tooling check -s nightly --phase 2c", "the nightly checks of phase 2c"),
    ),
    "sweep": (
        ("tooling sweep --phase 2a --grid batch_size=32,64 --grid lr=1e-4,3e-4", "a trial per combination"),
        ("tooling sweep --phase 1 --grid bucket_cap_mb=25,50 --local --steps 100", "a quick sweep here"),
        ("tooling sweep --phase 2a --resume <sweep>", "run only the trials an interrupted sweep missed"),
        ("tooling sweep --phase 2a --lock --yes", "make the latest sweep's best trial the production config"),
        ("tooling sweep --phase 1 --grid bucket_cap_mb=25,50 --local --json", "the ranking as JSON"),
    ),
    "self-check": (
        ("tooling self-check", "is this control machine ready to run the toolkit"),
        ("tooling self-check --json", "the same as one JSON document"),
    ),
    "rehearse": (
        ("tooling rehearse --phase 1", "phase 1 end to end on the sandbox cluster"),
        ("tooling rehearse --phase 1 --local --steps 100", "a short rehearsal on this machine, no sandbox"),
        (
            "tooling rehearse --phase 1 --local --steps 100 --resume <run>",
            "resume an interrupted local rehearsal from its last checkpoint",
        ),
        (
            "tooling rehearse --phase 2a --resume <run>",
            "watch a cluster rehearsal again after Ctrl-C (the bar, or its summary once it ended)",
        ),
        ("tooling rehearse --phase 1 --local --json", "the run's figures as one JSON document"),
    ),
    "sandbox up": (
        ("tooling sandbox up", "start the sandbox cluster"),
        ("tooling sandbox up --nodes 3 --monitor", "three nodes and the monitoring node"),
        ("tooling sandbox up --cpus-per-node 0.5", "each node a machine of half a CPU, as a forecast needs"),
    ),
    "sandbox status": (("tooling sandbox status", "the sandbox's containers and inventory"),),
    "sandbox down": (
        ("tooling sandbox down", "stop and remove the sandbox's containers"),
        ("tooling sandbox down --purge --yes", "also remove its state and inventory, without asking"),
    ),
    "sandbox image": (
        ("tooling sandbox image", "build the node image if it is missing"),
        ("tooling sandbox image --rebuild", "build it again"),
    ),
    "dashboards": (
        ("python -m tooling.dashboards", "write the Grafana dashboards from the generator"),
        ("python -m tooling.dashboards --check", "fail when the committed dashboards differ from it"),
    ),
}


def epilog(command: str) -> str:
    """The Examples section of `command` (its name under `tooling`, e.g. "sandbox up") for its help.

    Each example is a "# what it is for" line above a "$ command line" line, as gh prints them: typer's
    help drops leading spaces and wraps long lines, so a two-column layout would break, while a line that
    starts with `$` still reads as one command however narrow the terminal.
    """
    lines = [f"# {what}\n$ {argv}" for argv, what in EXAMPLES[command]]
    return "Examples:\n\n" + "\n\n".join(lines)
