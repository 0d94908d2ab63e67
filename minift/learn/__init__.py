"""Exercises: write a piece of minift yourself, and have it graded.

    python -m minift.learn list                      the exercises, in the tour's order
    python -m minift.learn start softmax my_work     my_work/softmax.py: a stub with a TODO
    python -m minift.learn check softmax my_work     grade my_work/softmax.py
    python -m minift.learn hint softmax my_work      the idea; again: the shapes; again: the formula

`check` loads your file from its path (never minift's own implementation), draws many
examples (with hypothesis when it is installed: a failing example is then shrunk to the
smallest it finds), and compares your results with minift's in float64: forward values,
gradients, and minift.gradcheck on your backward. The first failing input is printed
with the index where your answer differs, the expected value and yours.

    exercises   the ten exercises: what you write, how examples are drawn, how each is graded
    texts       the introduction at the top of each exercise's file
    grading     comparing arrays and ops, drawing examples
    runner      stubs cut from minift's own code, loading your file, running the examples, the report

The worked solution of each exercise is minift's own code: the function the stub is cut
from (`python -m minift.learn list` names it). Read it after trying.
"""
from .runner import check, exercise, hint, load_file, start, stub
from .exercises import EXERCISES

__all__ = ["EXERCISES", "check", "exercise", "hint", "load_file", "start", "stub"]
