"""Placeholder: filled in by the audiences work."""
