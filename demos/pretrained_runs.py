"""The pretrained runs the demos start from: reused when they are there, resumed when they
were interrupted, made when they are missing, so that every demo runs from a fresh clone.

    from pretrained_runs import ensure_pretrained
    ensure_pretrained("runs/small", PretrainConfig(preset="small"), device="cpu")
"""
from pathlib import Path

from minift.errors import MiniftError
from minift.pretrain import PretrainConfig, pretrain
from minift.runs import PRETRAINED_KINDS, RunDir, config_from_json


def pretraining_plan(init, config, any_recipe=True):
    """What to do with the directory `init` before a demo fine-tunes from it:
    'reuse' (it holds a finished pretraining run, of any recipe: yours is taken as it is;
    with any_recipe=False only one of `config`, as the quickstart's table needs),
    'resume' (an interrupted pretraining run of `config`), 'pretrain' (no run yet), or
    'other' (a run of another kind, or one of another recipe not to reuse: left alone)."""
    run = RunDir(init)
    if not run.holds_run():
        return "pretrain"
    cfg = run.read_config()
    if cfg.get("kind") not in PRETRAINED_KINDS:
        return "other"
    finished = run.is_finished()
    if finished and any_recipe:
        return "reuse"
    if config_from_json(PretrainConfig, cfg.get("train"), run.file("config.json"), "train") != config:
        return "other"
    return "reuse" if finished else "resume"


def ensure_pretrained(init, config, device="cpu", log=print, any_recipe=True):
    """Make sure `init` holds a finished pretraining run (see `pretraining_plan`), pretraining
    it with `config` when it is missing; a directory holding something else is one
    MiniftError that says what to do."""
    init = Path(init)
    plan = pretraining_plan(init, config, any_recipe)
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
        raise MiniftError(f"{init} holds another run (not a pretraining run, or one of another recipe); "
                          f"delete it or name another pretraining directory")
    return init
