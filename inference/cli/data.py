"""inferlab data: where each data file is looked up, and whether it is there."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def cmd_data(args: argparse.Namespace) -> int:
    """Exit status 2 when a file is missing or fails its checksum."""
    from models.datasets import SHA256, ChecksumMismatch, DataFileError, data_path

    status = 0
    for key in SHA256:
        try:
            print(f"{key:40s} {data_path(key)}")
        except ChecksumMismatch as exc:
            print(f"{key:40s} CHECKSUM MISMATCH: {exc}")
            status = 2
        except DataFileError as exc:
            print(f"{key:40s} MISSING: {exc}")
            status = 2
    return status


def add_parsers(sub) -> None:
    d = sub.add_parser("data", help="show where each data file is found (downloading missing ones)")
    d.set_defaults(func=cmd_data)
