import sys

from scotd.cli import main

sys.exit(main())
