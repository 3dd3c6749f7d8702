"""The `keras-guide` commands: each module adds its parser (`add_parser`) and
runs it (`run(args)`); `keras_guide.cli` holds the table and `main`.

Importing them imports `keras_guide.demo` once, which registers its names
with the resolver (`keras_guide.workflows.inputs`): `demo` as a model and a
tokenizer, `shakespeare:train`, `:validation` and `:test` as texts."""

import keras_guide.demo  # noqa: F401 (registers the demo's names)
