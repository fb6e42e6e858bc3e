import sys

from jestfilter.cli import main

sys.exit(main())
