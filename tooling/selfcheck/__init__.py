"""`tooling self-check`: is this control machine ready to drive a cluster? Python and its environment,
the pinned torch, Ansible, podman and the sandbox's network, the SSH keys, the inventory in use."""
