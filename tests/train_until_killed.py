#!/usr/bin/env python
"""Test helper: train as ``train_net.py`` does, and die abruptly after a checkpoint.

    python tests/train_until_killed.py --kill-after ITER --config-file CFG [KEY VALUE ...]

The process SIGKILLs itself at the end of iteration ``ITER`` (0-based), after every
hook of that iteration ran (the periodic checkpointer included): a real interruption,
nothing is flushed or saved on the way out.
"""

import os
import signal
import sys
from pathlib import Path

from detectron2.engine import HookBase

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_net  # noqa: E402
from minvis.engine import Trainer  # noqa: E402


class KillAfter(HookBase):
    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_step(self) -> None:
        if self.trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    argv = sys.argv[1:]
    at = argv.index("--kill-after")
    kill_after = int(argv[at + 1])
    args = train_net.parse_args(argv[:at] + argv[at + 2 :])
    trainer = Trainer(train_net.setup(args))
    trainer.register_hooks([KillAfter(kill_after)])  # after the checkpointer
    trainer.resume_or_load(resume=False)
    trainer.train()
