import sys

from xstilts.cli.main import main

sys.exit(main())
