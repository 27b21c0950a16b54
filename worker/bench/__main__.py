"""`python -m worker.bench [--quick] [--out DIR] …`: see `worker.bench.command`."""

import sys

from worker.bench.command import main

if __name__ == "__main__":
    sys.exit(main())
