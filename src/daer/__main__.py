import sys

from daer.cli import main

sys.exit(main())
