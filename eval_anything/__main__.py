import sys

from eval_anything.cli import main

sys.exit(main())
