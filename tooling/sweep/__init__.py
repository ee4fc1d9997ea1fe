"""`tooling sweep`: short trials of a grid of trainer settings on a phase, ranked, and the winner locked as
the phase's production config (<home>/production/), which deploys then lay over the phase's config."""

# Training steps of each trial when --steps is not given; here, apart from the sweep's modules, because
# `tooling sweep --help` shows it.
DEFAULT_STEPS = 200
