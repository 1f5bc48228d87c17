"""A stand-in for the OpenAI Assistants v2 API that replays real recorded streams.

Lets the gateway run, demo, test and benchmark without an upstream; the official SDK works against
it unchanged (`base_url=http://host:port/v1`). See `app.py` for the wiring.
"""

from .app import SIMULATOR_STATE, SimulatorSettings, build_simulator_app
from .state import RecordedRequest, SimulatorState

__all__ = ["SIMULATOR_STATE", "RecordedRequest", "SimulatorSettings", "SimulatorState", "build_simulator_app"]
