"""The models: wirings of the engine's generated blocks (a cell run over time, a readout, a merge,
attention) with a loss, and the layouts that name their parameters as frameworks do.

Models import the engine, never the uses (reports, the verifier, studies, oracles).
"""
