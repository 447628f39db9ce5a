import sys

from neurofm.cli import main

sys.exit(main())
