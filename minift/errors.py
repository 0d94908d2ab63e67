"""One error type for a user's mistakes.

minift raises `MiniftError` where it meets the outside world (command-line arguments,
labeled files, corpora, run directories, config.json, safetensors headers) with one
sentence that names the file, line, field or flag and says what to do about it. The
command line prints it as one line and exits with code 2; any other exception is a bug
in minift and keeps its traceback.

It is a ValueError, so code that catches ValueError keeps working.
"""


class MiniftError(ValueError):
    """A user's mistake, explained in one sentence (file, line, field or flag named)."""
