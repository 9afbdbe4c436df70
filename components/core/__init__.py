"""The vocabulary every other layer shares, and nothing of the project's own beneath it.

`errors.py` (`ConfigError`, the one error a user sees, and how pydantic's errors become lines naming
keys), `model.py` (`Frozen`, the base of every config and Args model) and `engine.py` (how the
Pulumi engine hands a dynamic provider unknowns and secrets). Imports: the standard library,
pydantic and the Pulumi SDK only.
"""
