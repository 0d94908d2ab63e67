"""Command-line conventions: --version, the program name as it was called, a help text
and a default for every flag, examples after each command's help, results on stdout and
progress on stderr (a plain line every few seconds when stderr is not a terminal), and
error messages that name only flags that exist."""
import argparse
import ast
import csv
import io
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minift
from minift import cli
from minift.errors import MiniftError
from minift.trainer import Progress

ROOT = Path(__file__).resolve().parent.parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def subparsers(parser=None):
    """{command: its ArgumentParser}."""
    parser = parser or cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flags_of(parser):
    """Every flag of `parser` and of its own subcommands (`data export --split`)."""
    nested = [p for a in parser._actions if isinstance(a, argparse._SubParsersAction) for p in a.choices.values()]
    return {s for a in parser._actions for s in a.option_strings}.union(*map(flags_of, nested))


# ----------------------------------------------------------------------------- --version, the program's name

def test_version_prints_the_package_version_and_setup_cfg_reads_it_from_there(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"minift {minift.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", minift.__version__)
    setup_cfg = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert re.search(r"^version = attr: minift\.__version__$", setup_cfg, re.M), "setup.cfg: one source of truth"
    from setuptools.config.setupcfg import read_configuration
    assert read_configuration(ROOT / "setup.cfg")["metadata"]["version"] == minift.__version__


def test_python_m_minift_version_and_usage_name_python_m_minift():
    run = subprocess.run([sys.executable, "-m", "minift", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout == f"minift {minift.__version__}\n", run.stderr
    run = subprocess.run([sys.executable, "-m", "minift", "pretrain"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and run.stderr.startswith("usage: python -m minift pretrain "), run.stderr


def test_the_program_name_is_the_one_the_user_typed(monkeypatch, capsys):
    assert cli.program_name("/home/u/minift/minift/__main__.py") == "python -m minift"
    assert cli.program_name("/home/u/.venv/bin/minift") == "minift"
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/minift", "finetune", "--help"])
    from minift.__main__ import main
    with pytest.raises(SystemExit):
        main()
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: minift finetune ") and "  minift finetune --init runs/small" in help_text
    assert "python -m minift" not in help_text


# ----------------------------------------------------------------------------- help texts, defaults, examples

NO_DEFAULT = {"--init"}         # required unless --resume: there is no default to state


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_flag_has_a_help_text_that_gives_its_default(command):
    parser = subparsers()[command]
    help_text = " ".join(parser.format_help().split())        # argparse wraps lines
    for action in parser._actions:
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{command} {name} has no help text"
        if not action.option_strings or action.required or action.nargs == 0 or name == "-h/--help":
            continue        # positional, required or an on/off switch
        if action.default is not None:
            said = f"(default: {action.default})" in help_text or "default" in action.help
            assert said, f"{command} {name}: its help does not show its default {action.default!r}"
        else:
            assert "default" in action.help or name in NO_DEFAULT, \
                f"{command} {name}: its default is None; its help must say where the default comes from"


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_each_command_help_ends_with_examples_that_parse(command):
    parser = cli.build_parser(prog="minift")
    text = subparsers(parser)[command].format_help()
    examples = text.split("\nexamples:\n", 1)[1].strip().splitlines()
    assert 2 <= len(examples) <= 3, examples
    for line in examples:
        words = line.split("#")[0].split()
        assert words[:2] == ["minift", command], line
        parser.parse_args([w.strip('"') for w in re.findall(r'"[^"]*"|\S+', line.split("#")[0])][1:])


def test_generate_help_shows_the_default_temperature():
    text = " ".join(subparsers()["generate"].format_help().split())
    assert "(default: 0.8)" in text and "(default: 60)" in text


# ----------------------------------------------------------------------------- stdout: results; stderr: the rest

@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    from minift.data import feedback
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(feedback.corpus_text(n_bytes=60_000, seed=0), encoding="utf-8")
    return path


def test_progress_and_notes_go_to_stderr_results_to_stdout(tmp_path, corpus_file, capsys):
    run = tmp_path / "lm"
    assert cli.main(["pretrain", "--out", str(run), "--corpus", str(corpus_file), "--preset", "tiny",
                     "--steps", "3", "--batch-size", "2", "--eval-every", "2", "--vocab-size", "300"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [out.strip()] and out.startswith(f"saved {run}  (validation loss"), out
    assert "corpus:" in err and "model:" in err and "eval  step     2" in err and "step     3/3" in err
    labeled = tmp_path / "reviews.csv"
    with open(labeled, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("text", "label")] + [("I love it.", "positive"), ("Awful.", "negative")] * 10)
    assert cli.main(["finetune", "--init", str(run), "--out", str(tmp_path / "ft"), "--strategy", "head",
                     "--train", str(labeled), "--test", str(labeled), "--epochs", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("validation: accuracy") and "reviews: accuracy" in out and "confusion" in out
    assert out.splitlines()[-1].startswith(f"saved {tmp_path / 'ft'}  reviews accuracy")
    assert "strategy head:" in err and "strategy head:" not in out and "step " not in out


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_off_a_terminal_prints_a_line_every_interval_and_at_the_end():
    clock, stream = Clock(), io.StringIO()
    progress = Progress(stream, every=1000, interval=10.0, clock=clock)
    assert not progress.live
    shown = []
    for step in range(1, 21):                                 # 3 s a step, 20 steps
        clock.now += 3.0
        if progress.wants(step, 20):
            shown.append(step)
            progress.update(step, 20, f"step {step}")
    assert shown == [4, 8, 12, 16, 20]                        # every 12 s, and the last
    assert stream.getvalue() == "".join(f"step {s}\n" for s in shown)
    clock.now += 9.0
    progress.print("eval")                                    # printed at once; the step lines keep
    assert stream.getvalue().endswith("step 20\neval\n")      # their own pace
    assert not progress.wants(21, 30)
    clock.now += 1.0
    assert progress.wants(21, 30)


def test_progress_on_a_terminal_redraws_one_line():
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    stream = Terminal()
    progress = Progress(stream, clock=Clock())
    for step in (1, 2):
        assert progress.wants(step, 9)
        progress.update(step, 9, f"step {step}")
    progress.print("eval")
    assert stream.getvalue() == "\r\033[Kstep 1\r\033[Kstep 2\neval\n"


def test_the_trainer_prints_when_progress_wants_it():
    """The default stream is stderr; the trainer shows a step exactly when Progress wants."""
    from minift.nn import Module, Parameter
    from minift.optim import SGD
    from minift.trainer import Trainer

    class OneWeight(Module):
        def __init__(self):
            self.w = Parameter(np.ones(2))

    class OneBatch:
        def next_batch(self):
            return (np.zeros((1, 1), np.int64),)

    assert Progress().stream is sys.stderr
    for interval, steps_shown in ((0.0, [1, 2, 3, 4, 5]), (math.inf, [5])):
        stream, model = io.StringIO(), OneWeight()
        Trainer(model, SGD([model.w], lr=0.1), OneBatch(), lambda m, b: (m.w * m.w).sum(), steps=5,
                progress=Progress(stream, interval=interval)).run()
        assert [int(line.split()[1].split("/")[0]) for line in stream.getvalue().splitlines()] == steps_shown


# ----------------------------------------------------------------------------- errors name real flags

# Where each part of minift is used from: the flags its messages name must be flags of one
# of these commands (None: of any command).
SOURCE_COMMANDS = {"pretrain.py": ["pretrain"], "adapt/": ["finetune", "classify"], "align/": ["align"],
                   "generate.py": ["generate"], "viz/": ["report"], "hf_gpt2.py": ["export", "finetune"]}
OWN_COMMAND_LINES = ("bench.py", "bench_kernels.py", "learn/")      # python -m minift.bench, .learn


def strings_in(path):
    """Every string constant in a file (the literal parts of f-strings too)."""
    return [node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_every_flag_the_source_names_exists_for_its_command():
    parser = cli.build_parser()
    parsers = subparsers(parser)
    every_flag = set().union(flags_of(parser), *map(flags_of, parsers.values()))
    wrong = []
    for path in sorted((ROOT / "minift").rglob("*.py")):
        name = path.relative_to(ROOT / "minift").as_posix()
        if name.startswith(OWN_COMMAND_LINES):
            continue
        commands = next((c for prefix, c in SOURCE_COMMANDS.items() if name.startswith(prefix)), None)
        allowed = set().union(*(flags_of(parsers[c]) for c in commands)) if commands else every_flag
        for text in strings_in(path):
            if "huggingface-cli" in text:               # another program's flags
                continue
            wrong += [f"minift/{name}: {flag} in {text[:60]!r}" for flag in FLAG.findall(text) if flag not in allowed]
    assert not wrong, "\n".join(wrong)


def bad_values():
    return (-1, 0, 1.5, float("nan"), "bogus", True)


@pytest.mark.parametrize("command", ["pretrain", "finetune", "align"])
def test_every_config_error_names_a_flag_of_its_command(command):
    """Each field of the command's config set to a bad value: the flags its MiniftError
    names (a flag made up from the field's name, too) are flags of the command."""
    from minift.adapt import FinetuneConfig
    from minift.align import AlignConfig
    from minift.pretrain import PretrainConfig
    config = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "align": AlignConfig}[command]
    allowed = flags_of(subparsers()[command])
    wrong, messages = [], 0
    for field in config.__dataclass_fields__:
        for value in bad_values():
            try:
                config(**{field: value})
            except MiniftError as e:
                messages += 1
                wrong += [f"{field}={value!r}: {e}" for flag in FLAG.findall(str(e)) if flag not in allowed]
            except (TypeError, ValueError, AttributeError, OSError):
                pass
    assert messages > 10 and not wrong, "\n".join(wrong)
