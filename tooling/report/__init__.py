"""Performance reports per phase and the weekly executive briefing (Markdown + HTML, matplotlib PNGs)."""
