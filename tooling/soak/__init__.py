"""`tooling soak`: run a phase's job for hours, watch it every interval, and keep a record of its uptime.

The record (<home>/soak/<id>/soak.json + soak.md) is the gate's evidence for uptime and restarts.
"""
