"""Reply generators for the legal-intake interviewer, and the case analysis they write from.

- `base`: the `ReplyGenerator` interface, `CaseAnalysis`, `TriageResult`, `GenerationError`;
- `analysis` (over `scan`, `areas`, `lexicon`, `questions`, `text`): the deterministic reading
  of a conversation, `analyze(conversation)`;
- `offline`: `OfflineInterviewer`, the default generator; `openai_compat`:
  `OpenAICompatibleGenerator`; `factory`: `create_generator(settings, http_client)`.

The triage result built from an analysis is `backend/triage/result.py`; the service that runs
the interview is `backend/conversations/service.py`; the runtime that generates replies in the
background is `backend/replies/`.
"""
