"""Presentation: rich text for the terminal (console), later HTML and widgets."""
