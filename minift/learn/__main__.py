"""`python -m minift.learn list | start NAME DIR | check NAME [DIR] | hint NAME`."""
import argparse
import sys

from ..errors import MiniftError
from .runner import EXAMPLES, check, exercise, start
from .exercises import EXERCISES


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minift.learn",
                                     description="Exercises: write a piece of minift, then have it graded.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the exercises, in the tour's order")
    p = sub.add_parser("start", help="write the stub of an exercise to DIR/NAME.py")
    p.add_argument("name", metavar="NAME")
    p.add_argument("directory", metavar="DIR")
    p = sub.add_parser("check", help="grade DIR/NAME.py against minift's own implementation")
    p.add_argument("name", metavar="NAME")
    p.add_argument("directory", metavar="DIR", nargs="?", default=".")
    p.add_argument("--examples", type=int, default=EXAMPLES, help=f"how many examples (default {EXAMPLES})")
    p = sub.add_parser("hint", help="a nudge for an exercise")
    p.add_argument("name", metavar="NAME")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            for ex in EXERCISES.values():
                print(f"{ex.name:<20} {ex.summary:<58} minift's: {ex.reference}")
            print("\nstart one with: python -m minift.learn start NAME DIR")
        elif args.command == "start":
            path = start(args.name, args.directory)
            print(f"wrote {path}: write {exercise(args.name).writes} where it says TODO, then run\n"
                  f"    python -m minift.learn check {args.name} {args.directory}")
        elif args.command == "check":
            if args.examples < 1:
                raise MiniftError(f"--examples must be at least 1, got {args.examples}")
            passed, report = check(args.name, args.directory, n=args.examples)
            print(report)
            return 0 if passed else 1
        else:
            ex = exercise(args.name)
            print(f"{ex.name} ({ex.writes}):\n  {ex.hint}\n  minift's own: {ex.reference}")
    except MiniftError as e:
        print(f"minift.learn {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


sys.exit(main())
