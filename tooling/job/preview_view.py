"""`tooling deploy --plan` as text: the phase's launch first, then one block per node."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from tooling.job.preview import DeployPreview, NodePreview
from tooling.plan.launch import host_port

# How many tasks, files or packages a role's line names before it says "... N more".
SHOWN = 6


def _names(items: list[str]) -> str:
    more = f" ... {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _ssh(connection: dict[str, Any]) -> str:
    user = f"{connection['user']}@" if connection.get("user") else ""
    become = f", become {connection['become_user']}" if connection.get("become") else ""
    return f"{user}{host_port(connection['address'], connection['port'])}{become}"


def ansible_lines(state: dict[str, Any]) -> list[str]:
    """What Ansible would change on one host, one line per role (markup escaped)."""
    status = state.get("status")
    if status in ("offline", "unreachable", "not checked"):
        colour = "magenta" if status == "unreachable" else "dim"
        return [f"[{colour}]{escape(str(status).upper())}[/]: {escape(str(state.get('reason')))}"]
    lines = [f"{state.get('changed', 0)} task(s) would change"]
    for role, found in (state.get("roles") or {}).items():
        parts = [f"{found['changed']} task(s)"]
        if found["files"]:
            parts.append(f"files: {_names(found['files'])}")
        if found["packages"]:
            parts.append(f"packages: {_names(found['packages'])}")
        lines.append(f"  {escape(role)}: {escape('; '.join(parts))}")
    for failure in state.get("failures") or []:
        lines.append(f"  [yellow]check mode stopped[/]: {escape(failure)}")
    return lines


def _node(out: Console, node: NodePreview, count: int) -> None:
    role = ", rendezvous host" if node.rendezvous_host else ""
    out.print(f"\n[bold]node {escape(node.host)}[/] ({node.order} of {count}{role})")
    rows = [
        ("ssh", _ssh(node.connection)),
        ("address", f"{node.address} (rendezvous, metrics and Prometheus; ddp_trainer_node_address)"),
        ("command", node.command_line),
        ("environment", " ".join(f"{k}={v}" for k, v in node.environment.items())),
        ("run dir", node.run_dir),
        ("checkpoints", node.checkpoint_dir),
        ("metrics", ", ".join(node.metrics_endpoints)),
    ]
    for label, value in rows:
        # Not wrapped: a command line stays one line to copy.
        out.print(f"  {label:<12} {escape(value)}", soft_wrap=True)
    lines = ansible_lines(node.ansible)
    out.print(f"  {'ansible':<12} {lines[0]}")
    for line in lines[1:]:
        out.print(f"  {'':<12} {line}")


def print_preview(out: Console, preview: DeployPreview) -> None:
    rdzv = preview.rendezvous
    out.print(
        f"[bold]deploy plan[/]: phase {escape(preview.phase)} (group {escape(preview.group)}), run "
        f"{escape(preview.run_id)}: {len(preview.nodes)} node(s) x {preview.nproc_per_node} processes = "
        f"{preview.world_size}; nothing was changed or launched"
    )
    steps = "; ".join(f"{s['playbook']} -l {s['limit']}" for s in preview.steps)
    rows = [
        ("inventory", preview.inventory),
        ("before launch", f"{steps}; then {preview.verification}"),
        ("rendezvous", f"{rdzv['backend']} at {rdzv['endpoint']} (on {rdzv['host']}), {rdzv['conf']}"),
        ("nnodes", f"{preview.nnodes} (torchrun --nnodes MIN:MAX; node ranks come from the rendezvous)"),
        (
            "config",
            preview.config + (f" with {preview.config_overrides}" if preview.config_overrides else ""),
        ),
        ("prometheus", ", ".join(preview.prometheus_targets)),
    ]
    if preview.excluded:
        rows.append(("left out", f"{', '.join(preview.excluded)} (quarantined; not launched, not scraped)"))
    for label, value in rows:
        out.print(f"  {label:<14}{escape(value)}")
    for node in preview.nodes:
        _node(out, node, len(preview.nodes))
    for host, state in preview.other_hosts.items():
        lines = ansible_lines(state)
        out.print(f"\n[bold]{escape(host)}[/] (not a node of the phase): {lines[0]}")
        for line in lines[1:]:
            out.print(f"  {line}")
    if preview.unreachable:
        out.print(
            f"\n[magenta]not reachable[/]: {escape(', '.join(preview.unreachable))} (the launch above is "
            "still what a deploy would run there)"
        )
