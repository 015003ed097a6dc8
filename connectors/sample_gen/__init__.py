"""Internals of the sample PSA export generator; the public API is `connectors.sample_data`."""
