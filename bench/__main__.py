"""`make bench`: every benchmark, one after the other, figures printed side by side.

Runs on uvloop, the event loop uvicorn uses in production (`uvicorn[standard]`).
"""

from __future__ import annotations

import uvloop

from bench import durability, state_write


def main() -> None:
    for messages in (20, 100):
        print(state_write.report(uvloop.run(state_write.run(messages=messages))))
        print()
    print(durability.report(uvloop.run(durability.run())))


if __name__ == "__main__":
    main()
