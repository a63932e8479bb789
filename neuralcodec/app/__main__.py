"""``python -m neuralcodec.app`` is the ``codec`` command."""

import sys

from neuralcodec.app.cli import main

sys.exit(main())
