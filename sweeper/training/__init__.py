"""A trial's training, in a child process of its own: the worker holds a handle, the child trains.

The worker side: `trainer_process` (the child's handle), `data` and `preflight` (prepared once per
worker), `backends` and `gpus`. The child side: `trainer`, `model`, `user_code`, `prepared`,
`child_output`; `protocol` is what they say to each other. The child's modules import neither
Optuna, pydantic nor plotly (`tests/unit/test_import_graph.py`).
"""
