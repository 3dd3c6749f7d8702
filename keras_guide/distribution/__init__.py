"""Data- and model-parallel GUIDE on `keras.distribution` (JAX) and `tf.distribute`.

Reference: arXiv 2510.06502.
"""

from keras_guide.distribution.layout_map import check_layout_map
from keras_guide.distribution.layout_map import layout_map
from keras_guide.distribution.make_distribution import make_distribution

__all__ = ["check_layout_map", "layout_map", "make_distribution"]
