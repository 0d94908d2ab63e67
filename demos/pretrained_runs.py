"""The pretrained runs the demos start from: reused when they are there, resumed when they
were interrupted, made when they are missing, so that every demo runs from a fresh clone.

    from pretrained_runs import ensure_pretrained
    ensure_pretrained("runs/small", PretrainConfig(preset="small"), device="cpu")
"""
from pathlib import Path

from minift.errors import MiniftError
from minift.pretrain import PretrainConfig, pretrain
from minift.runs import PRETRAINED_KINDS, RunDir, config_from_json


def pretraining_plan(init, config):
    """What to do with the directory `init` before a demo fine-tunes from it:
    'reuse' (it holds a finished pretraining run, of any recipe: yours is taken as it is),
    'resume' (an interrupted pretraining run of `config`), 'pretrain' (no run yet), or
    'other' (a run of another kind, or an interrupted one of another recipe: left alone)."""
    run = RunDir(init)
    if not run.holds_run():
        return "pretrain"
    cfg = run.read_config()
    if cfg.get("kind") not in PRETRAINED_KINDS:
        return "other"
    if run.is_finished():
        return "reuse"
    same = config_from_json(PretrainConfig, cfg.get("train"), run.file("config.json"), "train") == config
    return "resume" if same else "other"


def ensure_pretrained(init, config, device="cpu", log=print):
    """Make sure `init` holds a finished pretraining run (see `pretraining_plan`), pretraining
    it with `config` when it is missing; a directory holding something else is one
    MiniftError that says what to do."""
    init = Path(init)
    plan = pretraining_plan(init, config)
    what = f"the {config.preset} {'GPT' if config.arch == 'decoder' else 'encoder'}"
    if plan == "reuse":
        log(f"reusing the pretrained model in {init}/ (delete it to pretrain again)")
    elif plan == "resume":
        log(f"resuming the interrupted pretraining of {what} in {init}/")
        pretrain(init, resume=True, device=device)
    elif plan == "pretrain":
        log(f"no pretrained model in {init}/: pretraining {what} ({config.steps} steps) first")
        pretrain(init, config, device=device)
    else:
        raise MiniftError(f"{init} holds another run (not a pretraining run, or an unfinished one of another "
                          f"recipe); delete it or name another pretraining directory")
    return init
