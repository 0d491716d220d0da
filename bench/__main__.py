"""`make bench`: every benchmark, one after the other, figures printed side by side.

Runs on uvloop, the event loop uvicorn uses in production (`uvicorn[standard]`).
"""

from __future__ import annotations

import uvloop

from bench import (
    archive,
    chat_cost,
    durability,
    metrics_cost,
    replicated_write,
    scale,
    sse_chat,
    sse_idle,
    state_write,
)


def main() -> None:
    for messages in (20, 100):
        print(state_write.report(uvloop.run(state_write.run(messages=messages))))
        print()
    print(replicated_write.report(uvloop.run(replicated_write.run())))
    print()
    print(sse_chat.report(uvloop.run(sse_chat.run())))
    print()
    print(chat_cost.report(uvloop.run(chat_cost.run())))
    print()
    print(metrics_cost.report(uvloop.run(metrics_cost.run())))
    print()
    print(sse_idle.report(uvloop.run(sse_idle.run())))
    print()
    print(durability.report(uvloop.run(durability.run())))
    print()
    print(archive.report(uvloop.run(archive.run())))
    print()
    # A short look at the scale bench; the real levels: `python -m bench.scale --conversations
    # 2000,5000,10000 --minutes 3` (see the README).
    print(scale.report([uvloop.run(scale.run(300, minutes=1))]))
    print()


if __name__ == "__main__":
    main()
