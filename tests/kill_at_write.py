"""Run a minift command in this process, and SIGKILL it at its N-th file write.

    python tests/kill_at_write.py SPEC_JSON

SPEC_JSON: {"command": "pretrain" | "finetune" | "align", "out": dir, "init": dir
(finetune, align), "config": {settings}, "resume": bool, "until": step or null (stop
early there, as the commands' `until` does), "kill_at": N or null, "phase": "before" |
"after", "log": file or null}. Every atomic write of minift ends with
os.replace(temp, final); the N-th such rename is the kill point: "before" kills with the
temp file written and the final file not yet replaced, "after" right after the rename.
With a "log" file, the name of every file renamed is appended to it (to count the write
points).
"""
import json
import os
import signal
import sys


def install(kill_at, phase, log):
    real_replace, count = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        count[0] += 1
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(os.path.basename(dst) + "\n")
        if count[0] == kill_at and phase == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if count[0] == kill_at and phase == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace


def main():
    spec = json.loads(sys.argv[1])
    install(spec.get("kill_at"), spec.get("phase", "before"), spec.get("log"))
    common = dict(resume=spec["resume"], until=spec.get("until"), log=lambda *a, **k: None)
    if spec["command"] == "pretrain":
        from minift.pretrain import PretrainConfig, pretrain
        config = spec["config"] if spec["resume"] else PretrainConfig(**spec["config"])
        pretrain(spec["out"], config, **common)
    elif spec["command"] == "finetune":
        from minift.adapt import FinetuneConfig, finetune
        config = spec["config"] if spec["resume"] else FinetuneConfig(**spec["config"])
        finetune(spec["init"], spec["out"], config, **common)
    else:
        from minift.align import AlignConfig, align
        config = spec["config"] if spec["resume"] else AlignConfig(**spec["config"])
        align(spec["init"], spec["out"], config, **common)


if __name__ == "__main__":
    main()
