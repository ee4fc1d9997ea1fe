"""How well `tooling forecast` predicts the larger phases: fit on the measured runs of the first phases
(1 and 2a), predict every later phase that has a measured run (2b, 2c), and print prediction against
measurement side by side.

    python bench/forecast_accuracy.py [--runs-dir DIR] [--fit 1 --fit 2a] [--busbw GB/S] [--json FILE]

Runs are the newest of each phase under the runs directory (default <home>/runs, named as `tooling
rehearse` and `tooling deploy` name them); the bus bandwidth is verify-node's newest Gloo probe across
nodes unless --busbw gives it. For each predicted phase it prints throughput, step time and communication
overhead predicted (with the band) and measured, the error, and whether the measured throughput is within
--target (default 15 %) of the prediction. --json FILE keeps the whole comparison. Exit 1 when a phase
misses the target, 2 when a run or the bandwidth is missing.

Every run is also listed with its measured step, compute and wait and its ranks' CPU use (the summary's
mean `cpu_utilisation_ratio`, as a ratio to the fitted runs'): the model takes a node's capacity to be the
same in every phase, so a phase whose ranks got less CPU (a shared or over-committed host, e.g. a sandbox
whose nodes together ask for every CPU the machine has) was measured on other machines than the fit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's tooling/, ahead of any installed copy
    sys.path.insert(0, str(ROOT))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs-dir", type=Path, help="run directories (default: <home>/runs)")
    parser.add_argument(
        "--artifacts-dir", type=Path, help="verify-node's kept artifacts (default: <home>/verify)"
    )
    parser.add_argument("--fit", action="append", help="a phase to fit on; repeat (default: 1 and 2a)")
    parser.add_argument("--busbw", type=float, help="all-reduce bus bandwidth in GB/s")
    parser.add_argument("--target", type=float, default=0.15, help="largest throughput error (default 0.15)")
    parser.add_argument("--json", type=Path, help="write the comparison here as JSON")
    return parser.parse_args(argv)


def compare_phases(args: argparse.Namespace) -> dict[str, Any]:
    """The comparison document; ToolingError when a needed run or the bandwidth is missing."""
    from tooling import home
    from tooling.console import ToolingError
    from tooling.forecast.cli import bandwidth
    from tooling.forecast.evidence import load_runs
    from tooling.forecast.predict import compare, forecast
    from tooling.gates.evidence import find_latest_run
    from tooling.gates.site import effective_criteria
    from tooling.plan.phases import load_phases

    plan = load_phases()
    runs_dir = args.runs_dir or home.runs()
    fit_on = args.fit or [name for name, _ in plan.ordered()[:2]]
    latest = {name: find_latest_run(runs_dir, name) for name, _ in plan.ordered()}
    missing = [name for name in fit_on if latest.get(name) is None]
    if missing:
        raise ToolingError(f"no run of phase {', '.join(missing)} under {runs_dir} to fit on")
    fitted = load_runs([p for name in fit_on if (p := latest[name]) is not None], plan)
    busbw, source = bandwidth(args.busbw, args.artifacts_dir or home.verify())
    phases: dict[str, Any] = {}
    measured_runs = list(fitted)
    for name, phase in plan.ordered():
        measured_path = latest.get(name)
        if name in fit_on or measured_path is None:
            continue
        criteria = effective_criteria(name, phase, None, None)
        result = forecast(plan, name, fitted, busbw, source, criteria)
        measured = load_runs([measured_path], plan)[0]
        measured_runs.append(measured)
        comparison = compare(result, measured)
        error = comparison["figures"]["throughput"]["error_ratio"]
        phases[name] = {
            **comparison,
            "predicted": {k: b.as_dict() for k, b in result.figures.items()},
            "within_target": error is not None and abs(error) <= args.target,
        }
    return {
        "fitted_on": {r.phase or "?": str(r.path) for r in fitted},
        "runs": [{**r.as_dict(), "cpu_utilisation_ratio": _rank_cpu(r.path)} for r in measured_runs],
        "bandwidth_source": source,
        "target": args.target,
        "phases": phases,
    }


def _rank_cpu(summary_path: Path) -> float | None:
    """The ranks' mean CPU use as the trainer measured it (None when the summary has none)."""
    import statistics

    ranks = json.loads(summary_path.read_text(encoding="utf-8")).get("ranks") or []
    values = [r["cpu_utilisation_ratio"] for r in ranks if isinstance(r.get("cpu_utilisation_ratio"), float)]
    return statistics.fmean(values) if values else None


def _print_runs(runs: list[dict[str, Any]], fitted: set[str]) -> None:
    """Each run's measurements, with its ranks' CPU use against the fitted runs' (module docstring)."""
    import statistics

    base = [r["cpu_utilisation_ratio"] for r in runs if r["summary"] in fitted and r["cpu_utilisation_ratio"]]
    reference = statistics.fmean(base) if base else None
    for r in runs:
        cpu = r["cpu_utilisation_ratio"]
        against = f" (x{cpu / reference:.2f} of the fitted runs')" if cpu and reference else ""
        print(
            f"  {r['phase'] or '?':3} {r['nodes']} x {r['world_size'] // r['nodes']}: "
            f"{r['throughput']:9.1f} samples/s, step {r['step_seconds'] * 1e3:7.2f} ms = "
            f"compute {r['compute_seconds'] * 1e3:6.2f} + wait {r['wait_seconds'] * 1e3:7.2f} ms, "
            f"rank CPU {'-' if cpu is None else f'{cpu:.3f}'}{against}"
        )


def main(argv: list[str] | None = None) -> int:
    from tooling.console import ToolingError

    args = parse(argv)
    try:
        document = compare_phases(args)
    except ToolingError as exc:
        print(f"forecast accuracy: {exc}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return 2
    print(f"fitted on {', '.join(f'{k}: {v}' for k, v in document['fitted_on'].items())}")
    print(f"bus bandwidth: {document['bandwidth_source']}")
    print("runs (measured):")
    _print_runs(document["runs"], set(document["fitted_on"].values()))
    if not document["phases"]:
        print("no later phase has a measured run yet: nothing to compare")
    for name, entry in document["phases"].items():
        print(f"phase {name} against {entry['run']}:")
        for figure, f in entry["figures"].items():
            band = entry["predicted"][figure]
            error = f["error_ratio"]
            print(
                f"  {figure:15} predicted {f['predicted']:12.4g} [{band['low']:.4g} .. {band['high']:.4g}]"
                f"  measured {f['measured']:12.4g}  error {'-' if error is None else f'{error:+7.1%}'}"
            )
        verdict = "PASS" if entry["within_target"] else "FAIL"
        print(f"  throughput within {document['target']:.0%}: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(e["within_target"] for e in document["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
