"""Reply generation and triage for the legal-intake interviewer.

- `base`: the `ReplyGenerator` interface, `CaseAnalysis`, `TriageResult`, `GenerationError`;
- `analysis` (over `scan`, `areas`, `lexicon`, `questions`, `text`): the deterministic reading
  of a conversation, `analyze(conversation)`;
- `triage`: `build_triage_result(conversation, analysis)`;
- `offline`: `OfflineInterviewer`, the default generator; `openai_compat`:
  `OpenAICompatibleGenerator`; `factory`: `create_generator(settings, http_client)`.
"""
