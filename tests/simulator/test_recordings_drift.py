"""The recordings the simulator ships are the transcripts in ../shared/fixtures/openai-streams, byte for
byte. Every other test replays the packaged copies, so a fresh clone needs nothing beside it; this one
notices when the two drift apart, and is skipped only where ../shared is absent."""

from __future__ import annotations

import pytest

from tests.recordings import PACKAGED, SHARED

NO_SHARED = f"no ../shared beside the repository ({SHARED} is absent): nothing to compare the packaged recordings with"


@pytest.mark.skipif(not SHARED.is_dir(), reason=NO_SHARED)
def test_packaged_recordings_equal_the_shared_fixtures():
    packaged = {path.name: path.read_bytes() for path in PACKAGED.iterdir() if path.is_file()}
    shared = {path.name: path.read_bytes() for path in SHARED.iterdir() if path.is_file()}
    assert sorted(packaged) == sorted(shared)
    assert [name for name in sorted(packaged) if packaged[name] != shared[name]] == []
