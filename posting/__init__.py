"""Posting: planning, sending and the window that drives them, above the staging database."""
