"""Configuration at the bottom of the layers: the validated STAGEPOST_* settings model and the
grammar of the settings it checks (posting hours), so every layer may read them."""
