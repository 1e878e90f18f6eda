"""Evasion attacks."""
