"""Placeholder: filled in by the email work."""
