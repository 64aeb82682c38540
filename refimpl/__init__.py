"""refimpl: a NumPy reference implementation of Montavon, Samek & Mueller (2017).

"Methods for interpreting and understanding deep neural networks", Digital Signal Processing 73.
Every equation of the paper lives in one small function whose docstring cites its number.
"""

__version__ = "0.1.0"
