"""Reconciling default storage with the rows that reference its files."""
