"""Data- and model-parallel GUIDE on `keras.distribution` (JAX) and `tf.distribute`.

Reference: arXiv 2510.06502.
"""

from keras_guide.distribution.make_distribution import make_distribution
from keras_guide.distribution.make_distribution import paused_distribution
from keras_guide.distribution.sharding import check_sharding
from keras_guide.distribution.sharding import sharding_layouts

__all__ = [
    "check_sharding",
    "sharding_layouts",
    "make_distribution",
    "paused_distribution",
]
