"""`tooling check`: the daily operations checklist (schedules, node probes, judging, snapshots, CLI)."""
