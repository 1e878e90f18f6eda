"""Datasets, feature schemas, mergeable profiles and the data-quality checks."""
