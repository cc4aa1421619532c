import sys

from advcalib.cli import main

sys.exit(main())
