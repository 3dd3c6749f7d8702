"""GUIDE's initialization: the projection, uniform selection, folding, and the
initializer."""

from keras_guide.initializers.folding import diagonal_gain
from keras_guide.initializers.folding import fold_gain
from keras_guide.initializers.folding import fold_shift
from keras_guide.initializers.folding import norm_scale
from keras_guide.initializers.folding import project_axis
from keras_guide.initializers.folding import select_axis
from keras_guide.initializers.guided_initializer import GuidedInitializer
from keras_guide.initializers.guided_initializer import guided_value
from keras_guide.initializers.projection import Projection
from keras_guide.initializers.projection import as_projection
from keras_guide.initializers.projection import pca_projection
from keras_guide.initializers.projection import selection_projection
from keras_guide.initializers.selection import gqa_head_indices
from keras_guide.initializers.selection import uniform_indices
