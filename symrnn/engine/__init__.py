"""The engine: cell equations -> symbolic adjoints -> generated code.

Cells are SymPy equations (:mod:`.cell`, the built-ins in :mod:`.cells`) over the vocabulary of
:mod:`.symbols` and the rules of :mod:`.functions`; :mod:`.bptt` derives their adjoints, :mod:`.codegen`
turns them into NumPy code.  Nothing here imports the models or the uses.
"""
