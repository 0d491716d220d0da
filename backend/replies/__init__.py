"""The reply runtime: replies generated in the background, owned by the app, never a request.

- `bookkeeping`: what a conversation owes and the reply events (pure functions);
- `runner`: `ReplyRunner`, one generator per session across replicas (a lease), recovery
  through the replies' due set, outages waited out (`waits`).
"""
