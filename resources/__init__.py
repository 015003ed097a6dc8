"""Dagster resources (ConfigurableResource classes) and the settings that build them from the environment."""
