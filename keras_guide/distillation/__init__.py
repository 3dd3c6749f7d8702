"""Knowledge distillation for GUIDE students: the loss functions (`losses`),
the Distiller's terms (`terms`), the offline teacher and the `Distiller`."""

from keras_guide.distillation.distiller import Distiller
from keras_guide.distillation.losses import KDLoss
from keras_guide.distillation.losses import hidden_state_loss
from keras_guide.distillation.losses import kd_loss
from keras_guide.distillation.losses import kl_divergence_from_logits
from keras_guide.distillation.losses import sparse_cross_entropy
from keras_guide.distillation.losses import token_mean
from keras_guide.distillation.losses import top_k_kd_loss
from keras_guide.distillation.offline import offline_teacher_dataset
from keras_guide.distillation.offline import teacher_top_k
from keras_guide.distillation.terms import DistillationLoss
from keras_guide.distillation.terms import FeatureDistillation
from keras_guide.distillation.terms import LogitsDistillation

__all__ = [
    "DistillationLoss",
    "Distiller",
    "FeatureDistillation",
    "KDLoss",
    "LogitsDistillation",
    "hidden_state_loss",
    "kd_loss",
    "kl_divergence_from_logits",
    "offline_teacher_dataset",
    "sparse_cross_entropy",
    "teacher_top_k",
    "token_mean",
    "top_k_kd_loss",
]
