"""Deprecated name of ``jobs/sample.py`` (jobs are named after their stage); kept so existing
``ray job submit ... python jobs/sample_teacher.py`` commands keep working.
"""

import runpy
import sys
from pathlib import Path

print("note: jobs/sample_teacher.py is now jobs/sample.py", file=sys.stderr)
runpy.run_path(str(Path(__file__).with_name("sample.py")), run_name="__main__")
