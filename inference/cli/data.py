"""inferlab data: where each data file is looked up, and whether it is there."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def cmd_data(args: argparse.Namespace) -> int:
    from models.datasets import SHA256, DataFileError, data_path

    for key in SHA256:
        try:
            print(f"{key:40s} {data_path(key)}")
        except DataFileError as exc:
            print(f"{key:40s} MISSING: {exc}")
    return 0


def add_parsers(sub) -> None:
    d = sub.add_parser("data", help="show where each data file is found (downloading missing ones)")
    d.set_defaults(func=cmd_data)
