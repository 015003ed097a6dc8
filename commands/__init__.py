"""What starts stagepost from a shell: the demo (`demo.py`) and the operations commands
(`ops.py`: health, backup, retention; the health checks in `health.py`). The top layer: a
command may use the assembly (`pipelines`) and everything below it."""
