"""The DDP trainer that runs on the nodes. Shipped alone: it never imports `tooling`."""

__version__ = "0.1.0"
