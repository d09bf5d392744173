"""``emotionctl demo``: the whole product in about a minute, on the local stack.

A local RTMP source plays a clip made from a real face photo (a smiling face, then an empty room, in a loop);
a session is created on it through the HTTP API with a dev token; the worker state and the per-second emotions
are followed live over the WebSocket (``session_worker_state`` and ``session_emotions_intensities`` ``<id>:1s``);
after the chosen time the session is stopped and its totals and timeline are read back over HTTP.

- :mod:`.stack` finds (or starts) the local stack, mints the dev token, makes the clip and its RTMP source;
- :mod:`.client` the REST calls and the WebSocket protocol (aiohttp);
- :mod:`.view` what the terminal shows (pure functions, and the status line);
- :mod:`.flow` the demo itself (:func:`run_demo`).

Everything the user sees goes to ``out`` (stdout): it is the command's result. The flow waits on events (the
WebSocket's, the processes'), never on timers, except its deadlines and the protocol's keep-alive ping.
"""

from .environment import DemoError, StackMissing
from .walkthrough import DemoOptions, DemoResult, Interrupted, Signals, run_demo

__all__ = ["DemoError", "DemoOptions", "DemoResult", "Interrupted", "Signals", "StackMissing", "run_demo"]
