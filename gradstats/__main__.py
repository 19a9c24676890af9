import sys

from gradstats.cli import main

sys.exit(main())
