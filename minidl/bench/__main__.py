"""python -m minidl.bench: the same as the minidl-bench command."""

import sys

from minidl.bench.cli import main

sys.exit(main())
