"""Phase gates: judge a run against its phase's criteria (tooling/phases.yml) and keep the decision."""
