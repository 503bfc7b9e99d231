"""``python -m perceptlab.cli`` (and ``torchrun ... -m perceptlab.cli``): the ``perceptlab`` command."""

import sys

from perceptlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
