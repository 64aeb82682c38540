"""Interpretation (paper sec. 3): activation maximization three ways, the Gaussian RBM
expert, the GAN, and prototype quality."""
