"""Data: real MNIST (search, fetch) and the IDX format."""
