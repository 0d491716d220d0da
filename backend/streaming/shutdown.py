"""Tell streaming clients that the replica is going away before the server drops them.

On SIGTERM uvicorn closes every open WebSocket itself, with 1012, on its next tick (0.1 s) —
before the app's lifespan hears of the shutdown, so the app never gets to say why. And
sse-starlette notices the signal only by polling every 0.5 s. So the app chains its own step
in front of the server's signal handler: the signal first ends every stream of this replica
(`StreamHub.going_away`, run in the event loop): a WebSocket gets its `error` frame and closes
with 1001 Going Away, an SSE response ends (cleanly; one whose client is not reading is cut
after SSE_SHUTDOWN_GRACE_SECONDS); both reconnect to another replica with their last event
id. Then the server's own handler runs as before.

uvicorn installs its handlers with `signal.signal` before it imports the app, which is why this
wraps the installed handler at start-up instead of patching `uvicorn.Server` (the latter is
what sse-starlette tries, and it misses for that reason: sse-starlette#132).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_exit_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` in the running loop when SIGINT/SIGTERM arrives, then the handler that
    was installed (uvicorn's). Returns a function that puts the previous handlers back.

    Does nothing outside the main thread (signals can't be handled there) or where no Python
    handler is installed (not under a server that handles the signal itself)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    restore: dict[int, Any] = {}
    for sig in EXIT_SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            # A signal handler interrupts the loop between two bytecodes: hand the work to
            # the loop instead of touching its state from here.
            loop.call_soon_threadsafe(callback)
            previous(signum, frame)

        signal.signal(sig, handler)
        restore[sig] = previous

    def undo() -> None:
        for sig, previous in restore.items():
            # Only if ours is still installed: the server restores its own saved handlers.
            if getattr(signal.getsignal(sig), "__name__", "") == "handler":
                signal.signal(sig, previous)

    return undo
