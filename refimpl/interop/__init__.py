"""Import and export of networks from other frameworks (PyTorch, ONNX); each needs its extra."""
