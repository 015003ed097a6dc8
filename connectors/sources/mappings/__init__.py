"""Shipped vendor mappings (TOML files, see docs/mappings.md); a package so they are installed."""
