"""Exercises: write a piece of minift yourself, and have it graded.

    python -m minift.learn list                      the exercises, in the tour's order
    python -m minift.learn start softmax my_work     my_work/softmax.py: a stub with a TODO
    python -m minift.learn check softmax my_work     grade my_work/softmax.py
    python -m minift.learn hint softmax my_work      the idea; again: the shapes; again: the formula
    python -m minift.learn run my_work               your passed pieces in minift's place train the GPT

`check` loads your file from its path (never minift's own implementation), draws many
examples (with hypothesis when it is installed: a failing example is then shrunk to the
smallest it finds), and compares your results with minift's in float64: forward values,
gradients, and minift.gradcheck on your backward. The first failing input is printed
with the index where your answer differs, the expected value and yours, and a few lines
of Python that replay it.

    exercise    what an exercise is: the Exercise record, replaying a failure
    exercises   the first ten (backward passes of the fused ops, the pieces of adaptation) and
                the list of all 21 in the tour's order
    build       forward passes: a stable softmax, attention, the heads, a GPT block, LoRA
    pieces      whole pieces: the engine's walk, a training step, sampling, a BPE merge, DPO
    texts, build_texts, pieces_texts   the introduction at the top of each exercise's file
    grading     comparing arrays and ops (a constant ratio named), drawing examples
    runner      stubs cut from minift's own code, loading your file, running the examples, hints
    plug        `run`: your pieces in minift's place, the table compared, a drift named

The worked solution of each exercise is minift's own code: the function the stub is cut
from (`python -m minift.learn list` names it). Read it after trying.
"""
from .runner import check, exercise, hint, load_file, start, stub
from .exercises import EXERCISES

__all__ = ["EXERCISES", "check", "exercise", "hint", "load_file", "start", "stub"]
