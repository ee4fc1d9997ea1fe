"""A local cluster of podman containers that behave like real nodes (systemd + sshd, fixed addresses).

`tooling sandbox up|down|status|image`; `podman_env()` is the environment every podman or molecule
invocation in this project must use.
"""

from tooling.sandbox.podman import podman_env

__all__ = ["podman_env"]
