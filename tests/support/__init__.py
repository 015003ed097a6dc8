"""Helpers, fixtures and fakes the tests share (not tests themselves)."""
