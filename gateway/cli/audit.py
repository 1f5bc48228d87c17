"""`python -m gateway audit verify`: each file's chain, its MACs given the key, its checkpoints given
them, and a plain warning of what the checks that could not run would have caught.

Exit codes (the worst over the files): 0 intact, 1 tampered, missing, reordered, cut or rewritten,
2 a file cannot be read or a keyed log was given no key, 3 intact but records were lost to sink failures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.telemetry.audit.anchor import check_checkpoints
from gateway.telemetry.audit.chain import VerifyReport, rotated_files, verify, verify_chain


def verify_audit(paths: Sequence[str], with_backups: bool, checkpoints: Sequence[str], key_env: str) -> int:
    if checkpoints and len(checkpoints) != len(paths):
        print("--checkpoints: give one per file, in the same order (each worker has its own)", file=sys.stderr)
        return 2
    key = os.environ.get(key_env, "").encode() or None
    anchors: list[Path | None] = [Path(cp) for cp in checkpoints] or [None] * len(paths)
    return max(_verify_one(Path(path), with_backups, cp, key, key_env) for path, cp in zip(paths, anchors, strict=True))


def _verify_one(path: Path, with_backups: bool, checkpoints: Path | None, key: bytes | None, key_env: str) -> int:
    files = rotated_files(path) if with_backups else [path]
    try:
        report = verify_chain(files, key) if with_backups else verify(path, key=key)
        if report.ok and report.keyed and key is None:
            print(
                f"{path}: its records carry MACs: give its key in ${key_env} (--key-env NAME) to verify them",
                file=sys.stderr,
            )
            return 2
        problem = check_checkpoints(report, files, checkpoints, key) if report.ok and checkpoints else None
    except OSError as exc:
        print(f"{exc.filename or path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    if problem is not None:
        print(f"{report.path}: {problem} (checked against {checkpoints})")
        return 1
    print(report)
    if not report.ok:
        return 1
    _warn_of_blind_spots(report, checkpoints, key, key_env)
    return 3 if report.dropped else 0  # intact, but records were lost to sink failures: not a clean bill


def _warn_of_blind_spots(report: VerifyReport, checkpoints: Path | None, key: bytes | None, key_env: str) -> None:
    """What an intact chain does not prove without the key or the checkpoints: said, not hidden in the exit code
    (an unanchored log verifies as before; anchoring it is what makes these checks possible)."""
    spots = []
    if checkpoints is None:
        spots += ["records cut from the end", "records removed from the start of a file (unless it starts at seq 1)"]
    if key is None:
        spots.append("a chain rewritten from scratch without some of its records")
    if not spots:
        return
    what = "not anchored" if checkpoints is None and key is None else "partly anchored"
    listed = ", ".join(spots[:-1]) + (" or " if len(spots) > 1 else "") + spots[-1]
    print(
        f"{report.path}: WARNING: {what}: verify cannot detect {listed}. Anchor the log with audit.mac_key and "
        f"audit.checkpoints, and verify with its key (${key_env}, --key-env NAME) and --checkpoints FILE.",
        file=sys.stderr,
    )
