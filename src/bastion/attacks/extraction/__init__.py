"""Extraction attacks."""
