"""The run layer: what `distill`, `compress`, the ablation and `export` share.

- `folder`: the run folder: one check of `--out` (`check_run_folder`: no
  input written over, writable, owned by one process at a time, a previous
  run continued or replaced only when asked).
- `record`: the settings a resume must find unchanged (`run.json`, the
  checkpoints' manifests).
- `budget`: how long the student trains and how (`Budget`), with the one
  KD setting (`RECIPE`, `distiller_arguments`).
"""

from keras_guide.workflows.run.budget import RECIPE
from keras_guide.workflows.run.budget import Budget
from keras_guide.workflows.run.budget import distiller_arguments
from keras_guide.workflows.run.budget import kd_settings
from keras_guide.workflows.run.folder import LOCK_FILE
from keras_guide.workflows.run.folder import InputError
from keras_guide.workflows.run.folder import check_not_input
from keras_guide.workflows.run.folder import check_run_folder
from keras_guide.workflows.run.folder import check_writable
from keras_guide.workflows.run.folder import folder_outputs
from keras_guide.workflows.run.folder import lock_run_folder
from keras_guide.workflows.run.folder import owns_run_folder
from keras_guide.workflows.run.folder import release_run_folder
from keras_guide.workflows.run.folder import release_run_folders
from keras_guide.workflows.run.folder import remove_outputs
from keras_guide.workflows.run.folder import run_folder_scope
from keras_guide.workflows.run.record import RUN_FILE
from keras_guide.workflows.run.record import compress_settings
from keras_guide.workflows.run.record import run_settings
from keras_guide.workflows.run.record import same_run

__all__ = [
    "RECIPE",
    "RUN_FILE",
    "LOCK_FILE",
    "Budget",
    "InputError",
    "check_not_input",
    "check_run_folder",
    "check_writable",
    "compress_settings",
    "distiller_arguments",
    "folder_outputs",
    "kd_settings",
    "lock_run_folder",
    "owns_run_folder",
    "release_run_folder",
    "release_run_folders",
    "remove_outputs",
    "run_folder_scope",
    "run_settings",
    "same_run",
]
