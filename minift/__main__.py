"""`python -m minift` and the `minift` command: the command line, with the CPU-speed
appendix (minift.fast) turned on unless --reference or MINIFT_FAST=0 says otherwise.
Started by mpiexec with several processes, the command runs on all of them (minift.dist)."""
import sys

from . import cli, dist, fast


def main(argv=None):
    if dist.launched_size() > 1:
        return dist.main(argv, speed=fast.enable_unless_reference)
    return cli.main(argv, speed=fast.enable_unless_reference)


if __name__ == "__main__":
    sys.exit(main())
