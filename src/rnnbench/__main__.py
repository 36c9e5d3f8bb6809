"""`python -m rnnbench ...` is the `rnnbench` command (works without the venv on PATH)."""
import sys

from .cli import main

sys.exit(main())
