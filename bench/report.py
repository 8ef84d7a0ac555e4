"""What every benchmark prints: the command that produced it, the machine, then its markdown."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path


def publish(script: str, argv: list[str] | None, body: str, output: Path | None, machine: str = "") -> None:
    """Print the report for ``bench/<script>`` run with ``argv``; also write it to ``output``."""
    command = shlex.join(["python", f"bench/{script}", *(sys.argv[1:] if argv is None else argv)])
    text = f"Command: `{command}`  \nMachine: {os.cpu_count()} cores, Python {platform.python_version()}{machine}\n\n{body.strip()}\n"
    print(text)
    if output:
        output.write_text(text, encoding="utf-8")
