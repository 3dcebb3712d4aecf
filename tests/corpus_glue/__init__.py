"""Hand-written layers that are no built-in cell in a preset layout, for ``verify_layer(cell=None)``:
an LSTM without the output tanh (CS231n's functions), and an LSTM written one example at a time
with column vectors.  Each module's ``BUG`` (None: correct) plants one mistake in its backward."""
