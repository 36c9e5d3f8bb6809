"""`python -m rnnbench ...` is the `rnnbench` command (works without the venv on PATH).

The workflow's jobs start here; they end without the interpreter's teardown (rnnbench.process).
"""
from .cli import main
from .process import end_process

end_process(main())
