"""`python -m core.finetune`: the command's entry point; the code lives in core/training/finetune.py."""

import sys

from core.training.finetune import main

if __name__ == "__main__":
    sys.exit(main())
