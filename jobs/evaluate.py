"""Deprecated name of ``jobs/eval.py`` (jobs are named after their stage); kept so existing
``ray job submit ... python jobs/evaluate.py`` commands keep working.
"""

import runpy
import sys
from pathlib import Path

print("note: jobs/evaluate.py is now jobs/eval.py", file=sys.stderr)
runpy.run_path(str(Path(__file__).with_name("eval.py")), run_name="__main__")
