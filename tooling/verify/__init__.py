"""`tooling verify-node`: collect raw node outputs (playbooks/verify.yml), parse, judge against a profile."""
