"""Reading what the CLI printed inside rich's error panels, which frame and wrap their text."""

from __future__ import annotations


def flat(text: str) -> str:
    """The words, frames and line breaks gone: compare words, not layout."""
    return " ".join(text.replace("│", " ").split())


def squeezed(text: str) -> str:
    """No whitespace at all: a long path the panel wrapped mid-word still matches."""
    return "".join(text.replace("│", " ").split())
