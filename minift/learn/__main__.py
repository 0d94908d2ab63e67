"""`python -m minift.learn list | start NAME DIR | check NAME [DIR] | hint NAME [DIR] | run DIR`."""
import argparse
import sys

from ..errors import MiniftError
from .exercise import KINDS
from .exercises import EXERCISES
from .runner import EXAMPLES, HINTS, check, hint, start


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
    p = sub.add_parser("run", help="your code trains the GPT: every exercise of DIR that passes, in minift's place")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--quick", action="store_true", help="a few training steps: a smoke test, not a lesson")
    p.add_argument("--examples", type=int, default=EXAMPLES,
                   help=f"examples each exercise is checked on first (default {EXAMPLES})")
    p = sub.add_parser("hint", help="the next hint of an exercise: the idea, then the shapes, then the formula")
    p.add_argument("name", metavar="NAME")
    p.add_argument("directory", metavar="DIR", nargs="?", default=".",
                   help="where your exercises are; it remembers which hints you had (default .)")
    p.add_argument("--level", type=int, choices=[1, 2, 3],
                   help=f"this hint instead of the next: 1 {HINTS[0]}, 2 {HINTS[1]}, 3 {HINTS[2]}")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            for ex in EXERCISES.values():          # in the tour's order
                print(f"{ex.name:<20} {ex.kind:<9} {ex.summary:<58} minift's: {ex.reference}")
            counts = ", ".join(f"{sum(ex.kind == kind for ex in EXERCISES.values())} {kind} ({what})"
                               for kind, what in KINDS.items())
            print(f"\n{len(EXERCISES)} exercises: {counts}")
            print("\nstart one with: python -m minift.learn start NAME DIR")
        elif args.command == "start":
            path = start(args.name, args.directory)
            print(f"wrote {path}: write {EXERCISES[args.name].writes} where it says TODO, then run\n"
                  f"    python -m minift.learn check {args.name} {args.directory}")
        elif args.command == "check":
            if args.examples < 1:
                raise MiniftError(f"--examples must be at least 1, got {args.examples}")
            passed, report = check(args.name, args.directory, n=args.examples)
            print(report)
            return 0 if passed else 1
        elif args.command == "run":
            from .plug import run
            if args.examples < 1:
                raise MiniftError(f"--examples must be at least 1, got {args.examples}")
            return 0 if run(args.directory, quick=args.quick, examples=args.examples) else 1
        else:
            print(hint(args.name, args.directory, args.level))
    except MiniftError as e:
        print(f"minift.learn {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


sys.exit(main())
