"""The recordings the simulator ships are the real transcripts, byte for byte, as they were copied from
../shared/fixtures (openai-streams: Assistants streams; openai-responses: Responses cassettes).

`tests/fixtures/recordings.sha256` holds the digest of each transcript as recorded. Every clone checks the
packaged copies against it, so an edited recording cannot pass for a real one; where ../shared is beside
the checkout, its transcripts are checked against it too, so the two cannot drift apart unnoticed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.recordings import PACKAGED

MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "recordings.sha256"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
FOLDERS = {"": "openai-streams", "responses": "openai-responses"}  # packaged subfolder → shared folder


def digests(folder: Path) -> dict[str, str]:
    """Each transcript's sha256 (the attribution files, SOURCES.txt, are the project's own words)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file() and p.suffix != ".txt"}


def recorded() -> dict[str, dict[str, str]]:
    manifest: dict[str, dict[str, str]] = {}
    for line in MANIFEST.read_text().splitlines():
        digest, path = line.split("  ", 1)
        folder, _, name = path.rpartition("/")
        manifest.setdefault(folder, {})[name] = digest
    return manifest


def test_the_packaged_recordings_are_the_real_transcripts() -> None:
    manifest = recorded()
    assert sorted(manifest) == sorted(FOLDERS)
    for folder in FOLDERS:
        assert digests(PACKAGED / folder) == manifest[folder], f"recordings/{folder} differ from the transcripts"


def test_the_transcripts_beside_the_checkout_are_the_same() -> None:
    """Where ../shared is there (CI, a developer's machine), it holds exactly the transcripts shipped."""
    present = [folder for folder, shared in FOLDERS.items() if (SHARED / shared).is_dir()]
    for folder in present:
        assert digests(SHARED / FOLDERS[folder]) == recorded()[folder]
    assert present in ([], list(FOLDERS))  # both folders or neither: half a ../shared is a broken copy
