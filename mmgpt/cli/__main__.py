"""``python -m mmgpt.cli ...`` (what ``torchrun -m mmgpt.cli train ...`` runs)."""

import sys

from mmgpt.cli import main

sys.exit(main())
