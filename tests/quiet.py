"""Silence for tests: a log function and a progress line that print nothing."""
from minift.trainer import Progress


def quiet(*args, **kwargs):
    pass


class Silent(Progress):
    def update(self, *args):
        pass

    def print(self, text):
        pass
