"""Models with hand-written forward and backward passes: layers, networks, losses,
optimizers, training, and the model file."""
