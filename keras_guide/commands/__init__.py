"""The `keras-guide` commands: each module adds its parser (`add_parser`) and
runs it (`run(args)`); `keras_guide.cli` holds the table and `main`."""
