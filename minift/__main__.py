"""`python -m minift` and the `minift` command: the command line, with the CPU-speed
appendix (minift.fast) turned on unless --reference or MINIFT_FAST=0 says otherwise."""
import sys

from . import cli, fast


def main(argv=None):
    return cli.main(argv, speed=fast.enable_unless_reference)


if __name__ == "__main__":
    sys.exit(main())
