"""What a stack asks for: the typed stack config (`schema.py`), the migration phases as data
(`phases.py`), how the llama servers are sized on the stack's GPUs (`sizing.py`), and the loader
(`load.py`) that builds the model, then checks what needs all of it (the prod registry, the
sizing) before any resource exists; `cost_basis.py` builds the `costBasis` output that the cost
estimate and the policy pack's budget rule price a plan with. Imports: `core`, `catalog`.
"""
