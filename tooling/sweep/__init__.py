"""`tooling sweep`: short trials of a grid of trainer settings on a phase, ranked, and the winner locked as
the phase's production config (<home>/production/), which deploys then lay over the phase's config."""
