"""`python -m keras_guide`: the same as the `keras-guide` console script."""

import sys

from keras_guide.cli import main

sys.exit(main())
