"""Calibration: a teacher's activations on a little text, for data-aware GUIDE."""

from keras_guide.calibration.inputs import calibration_batches
from keras_guide.calibration.statistics import ActivationStatistics
from keras_guide.calibration.statistics import collect_statistics

__all__ = ["ActivationStatistics", "calibration_batches", "collect_statistics"]
