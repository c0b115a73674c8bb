import sys

from pushwire.cli import main

sys.exit(main())
