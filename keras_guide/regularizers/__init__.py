"""GUIDE's parameter-space regularization."""

from keras_guide.regularizers.guide_regularizer import GuideRegularizer
from keras_guide.regularizers.guide_regularizer import guide_regularizers
from keras_guide.regularizers.guide_regularizer import set_guide_strength
from keras_guide.regularizers.guide_regularizer import track_guide_state
