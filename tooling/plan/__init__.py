"""The plan layer: pure data and rules derived from the roll-out plan (tooling/phases.yml) and the inventory.

Nothing here talks to Ansible, SSH or podman; the roles reach it through plugins/filter/ddp_launch.py.
"""
