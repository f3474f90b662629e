import sys

from jaxstab.cli import main

sys.exit(main())
