"""Worked solutions of the exercises, one file each, in the very form a learner's file
takes. `python -m minift.learn start NAME DIR` copies one of these with every region
between `# SOLUTION: ...` and `# END SOLUTION` replaced by a TODO (check.stub), so the
stub and its solution can never drift apart. Read them after you have tried."""
