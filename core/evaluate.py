"""`python -m core.evaluate`: the command's entry point; the code lives in core/quality/evaluate.py."""

import sys

from core.quality.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
