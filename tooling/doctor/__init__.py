"""`tooling doctor`: hang diagnosis from the ranks' status files, process states and stacks."""
