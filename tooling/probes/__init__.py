"""Small standalone programs shipped to the nodes (no project imports: they run in the node venv)."""
