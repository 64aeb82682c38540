"""Explanation methods (paper sec. 4): sensitivity, Taylor decomposition, gradient x input, LRP.

Layers live in :mod:`refimpl.nn.layers`; this subpackage holds only how relevance passes them.
"""
