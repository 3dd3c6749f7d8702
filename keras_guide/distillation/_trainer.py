"""`fit`, `evaluate` and `predict` of the `Distiller`, with its host checks.

A layer over `keras.Model`'s trainer (as Keras keeps `Model`'s training
loop in `keras/src/trainers/`): each entry point checks its data on the host
before any step runs (`Distiller.check_data`, through `_data_checks`), `fit`
first checks the settings and a float16 model's first batch
(`_half_precision`) and stops at a non-finite loss, and a run that fails
leaves the Distiller usable.
"""

import contextlib

import keras

from keras_guide import _backend
from keras_guide.distillation import _data_checks
from keras_guide.distillation import _half_precision


class CheckedTrainer(keras.Model):
    """`keras.Model`'s `fit`, `evaluate`, `predict` and `*_on_batch`, each
    checking its data first: a base of the `Distiller`, whose `check_data`,
    `check_settings` and `check_half_precision` they call. (A `keras.Model`
    so that these methods keep the docstrings of Keras' own.)"""

    def _before_training(self, x, y, sample_weight, batch_size=None):
        """The checks of the settings and the first batch (float16 models
        only) before the first step; returns `x`, re-chained where drawing
        its first batch consumed it."""
        self.check_settings()
        if getattr(self, "_half_precision_checked", False) or not any(
            _half_precision.half_policy(m) for m in (self.student, self.teacher)
        ):
            return x
        first, x = _data_checks.first_batch(x, y, sample_weight, batch_size)
        if first is not None:
            self.check_data(*first)
            self.check_half_precision(first[0], first[1])
        return x

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        sample_weight=None,
        **kwargs,
    ):
        x = self._before_training(x, y, sample_weight, batch_size)
        check = _data_checks.Recorder(self.check_data)
        x = _data_checks.checked(x, y, sample_weight, check)
        if isinstance(validation_data, tuple):
            self.check_data(*validation_data)
        elif validation_data is not None:
            validation_data = _data_checks.checked(validation_data, None, None, check)
        callbacks = [*(callbacks or []), _half_precision.StopOnNonFinite(self)]
        with self._guarded(check):
            return super().fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                verbose=verbose,
                callbacks=callbacks,
                validation_split=validation_split,
                validation_data=validation_data,
                sample_weight=sample_weight,
                **kwargs,
            )

    def evaluate(
        self,
        x=None,
        y=None,
        batch_size=None,
        verbose="auto",
        sample_weight=None,
        **kwargs,
    ):
        check = _data_checks.Recorder(self.check_data)
        x = _data_checks.checked(x, y, sample_weight, check)
        with self._guarded(check):
            return super().evaluate(
                x,
                y,
                batch_size=batch_size,
                verbose=verbose,
                sample_weight=sample_weight,
                **kwargs,
            )

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        check = _data_checks.Recorder(self.check_data)
        x = _data_checks.checked(x, None, None, check)
        with self._guarded(check):
            return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)

    @contextlib.contextmanager
    def _guarded(self, check):
        """Leaves the Distiller usable after an error: puts back what a failed
        JAX run emptied (`_backend`) and drops the compiled step functions (a
        `tf.function` whose first trace failed would refuse to create the
        variables it still needs); a check that failed inside TensorFlow's
        input pipeline is raised as itself."""
        with _backend.restore_variables_on_error(self):
            try:
                yield
            except BaseException as error:
                self.train_function = None
                self.test_function = None
                self.predict_function = None
                check.reraise(error)
                raise

    def train_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        self.check_data(x, y, sample_weight)
        self._before_training(x, y, sample_weight)
        return super().train_on_batch(x, y, sample_weight=sample_weight, **kwargs)

    def test_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        self.check_data(x, y, sample_weight)
        return super().test_on_batch(x, y, sample_weight=sample_weight, **kwargs)

    def predict_on_batch(self, x):
        self.check_data(x)
        return super().predict_on_batch(x)
