"""The ``awares-train`` command line: build data, SFT, GRPO, evaluation.

Each subcommand lives beside the code it drives (``awares_train/<stage>/cli.py`` exposes one typer-annotated
function) and is registered here; the heavy libraries are imported only when a command runs.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

app = typer.Typer(rich_markup_mode=None, add_completion=False, no_args_is_help=True,  # help as written
                  help="Turn VQA data into crop-use trajectories and fine-tune VLMs to use the crop tool well.")

#: subcommand name -> "module:function" of a typer-annotated command function.
COMMANDS = {
    "build-data": "awares_train.data.cli:build_data",
    "sft": "awares_train.sft.cli:sft",
    "grpo": "awares_train.grpo.cli:grpo",
    "eval": "awares_train.eval.cli:evaluate",
    "reproduce": "awares_train.reproduce.cli:reproduce",
}


def _register() -> None:
    for name, target in COMMANDS.items():
        module, _, func = target.partition(":")
        try:
            fn = getattr(importlib.import_module(module), func)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("awares_train"):
                continue  # that stage is not part of this version
            raise
        app.command(name)(fn)


_register()


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
