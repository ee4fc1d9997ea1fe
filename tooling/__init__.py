"""The operator CLI that runs on the control machine."""
