"""Settings: one typed class, read from the environment (and `.env`), cached per process.

Tests build their own `Settings(...)` and pass it to `create_app(settings)` or override
`get_settings`; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The development default. At least 32 bytes: PyJWT warns on every token signed with a shorter
# HS256 key (RFC 7518, section 3.2), and refuses an empty one.
DEV_JWT_SECRET = "dev-insecure-jwt-secret-change-me-outside-development"
JWT_SECRET_MIN_BYTES = 32
# The URL scheme of a broker behind Redis Sentinel (kombu's).
SENTINEL_SCHEME = "sentinel"
# Values that mean "nobody set a real secret". Accepted only in development.
_PLACEHOLDER_SECRETS = {
    "",
    "change-me",
    "changeme",
    "secret",
    "dev-insecure-secret-change-me",
    DEV_JWT_SECRET,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    # "json": one JSON object per line (for log shippers); "text": for a terminal. Unset: text
    # in development, json elsewhere (see backend/core/logging.py).
    log_format: Literal["json", "text"] | None = None

    # Hot state.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    redis_socket_timeout: float = 5.0
    redis_connect_timeout: float = 2.0
    redis_max_connections: int = 256
    redis_retries: int = 2
    # Replicas that must hold a state write before it is acknowledged (Redis WAIT on the
    # write's own connection, backend/state/replication.py); 0: acknowledge once the master
    # has it (replication is asynchronous: a master that dies can take its last writes along).
    state_write_replicas: int = Field(default=0, ge=0)
    # How long a write waits for them; short of them by then, the client gets 503
    # state_not_replicated (the write is on the master: retry with the same Idempotency-Key).
    state_write_replicas_timeout_ms: int = Field(default=500, gt=0)
    key_prefix: str = Field(default="triage", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    conversation_ttl: int = Field(default=86_400, gt=0)
    orchestration_ttl: int = Field(default=86_400, gt=0)
    max_conversation_history: int = Field(default=100, gt=0)
    stream_maxlen: int = Field(default=2_000, gt=0)
    state_write_max_attempts: int = Field(default=128, gt=0)
    # Conversations kept decoded per process, with their JSON (backend/state/decoded.py).
    state_cache_sessions: int = Field(default=500, ge=0)

    # Conversation API: input limits and the per-user rate limit on posting messages.
    max_message_chars: int = Field(default=4_000, gt=0)
    max_body_bytes: int = Field(default=65_536, ge=1_024)
    rate_limit_messages: int = Field(default=30, gt=0)
    rate_limit_window_seconds: int = Field(default=60, gt=0)
    # Abuse limits: sessions one user may open per window, development tokens one client
    # address may mint per window (429 + Retry-After past them).
    rate_limit_sessions: int = Field(default=30, gt=0)
    rate_limit_sessions_window_seconds: int = Field(default=600, gt=0)
    rate_limit_dev_tokens: int = Field(default=20, gt=0)
    rate_limit_dev_tokens_window_seconds: int = Field(default=60, gt=0)
    # Idempotency-Key records kept per session: the newest N to 2N (older ones rotate out).
    idempotency_keys_per_session: int = Field(default=500, gt=0)
    # Reply generation: one generator per session, held by an expiring lease.
    generation_lease_ms: int = Field(default=10_000, ge=300)
    generation_sweep_seconds: float = Field(default=2.0, gt=0)
    generation_max_attempts: int = Field(default=3, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # SSE: keep-alive pings, slow-client cut-off, per-stream backlog, the shared tailer.
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    sse_send_timeout_seconds: float = Field(default=30.0, gt=0)
    sse_shutdown_grace_seconds: float = Field(default=2.0, ge=0)
    sse_max_backlog: int = Field(default=5_000, gt=0)
    # WebSocket: the wait for a browser's first `auth` frame, the slow-reader cut-off.
    ws_auth_timeout_seconds: float = Field(default=10.0, gt=0)
    ws_send_timeout_seconds: float = Field(default=30.0, gt=0)
    stream_block_ms: int = Field(default=2_000, ge=10, le=60_000)
    stream_check_seconds: float = Field(default=5.0, gt=0)
    # Session streams are grouped into this many notification partitions (a stable hash of the
    # session id): a replica holds one blocking read per partition on a cluster, one in all on
    # a single node, whatever the number of streamed sessions. Every replica and worker must
    # use the same value (see README, Scaling out).
    stream_partitions: int = Field(default=16, gt=0, le=256)
    # Every open stream re-reads its session stream this often, whatever the notifications
    # said: the bound on how long a lost notification can keep an idle stream silent.
    stream_sweep_seconds: float = Field(default=60.0, gt=0)
    # Move everything alive after start-up out of the cyclic GC's reach (gc.freeze): a full
    # collection then scans only what requests created, not the whole app (~70 ms pauses).
    gc_freeze: bool = True
    # The cyclic GC's young-generation threshold (Python's default: 700 allocations). At the
    # default, anything alive for ~10 ms (a request in flight, a reply being written) is
    # promoted to the old generation, and full collections over every open stream's objects
    # (~270 each) come every few seconds, each stopping the replica for 0.1-1 s: p99 to the
    # first event 270-700 ms at 5,000 conversations, 43.8 ms with 5,000. Much higher makes
    # each young collection long (50,000: p99 34-69 ms at 200 conversations; README, Scale).
    gc_young_threshold: int = Field(default=5_000, ge=700)

    # Warm state.
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/triage"
    database_pool_size: int = Field(default=10, gt=0)
    database_max_overflow: int = Field(default=10, ge=0)

    # Durability: Celery workers snapshot Redis into PostgreSQL (see backend/durability).
    # None: REDIS_URL. Celery's broker needs a standalone Redis: set it with REDIS_CLUSTER.
    # `sentinel://[:PASSWORD@]HOST:PORT[/DB];sentinel://HOST:PORT;...`: the broker behind
    # Redis Sentinel, its master found by the name below (README, "Broker high availability").
    celery_broker_url: str | None = None
    celery_broker_sentinel_master: str = Field(
        default="mymaster", pattern=r"^[A-Za-z0-9_.-]{1,64}$"
    )
    # The sentinels' own password (their `requirepass`), when they have one.
    celery_broker_sentinel_password: SecretStr | None = None
    celery_queue: str = Field(default="triage", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    celery_visibility_timeout: int = Field(default=3_600, gt=0)
    celery_task_time_limit: int = Field(default=600, gt=0)
    celery_timezone: str = "America/Sao_Paulo"
    # Reconnect attempts (with backoff) a worker makes when the broker is unreachable or
    # refuses writes before it exits non-zero for its supervisor to restart it; 0: forever.
    celery_broker_max_retries: int = Field(default=100, ge=0)
    # Two or more beats may run: the one holding this Redis lock schedules, the others stand
    # by and take over within this many seconds of its death (workers/beat.py).
    beat_lock_seconds: float = Field(default=30.0, gt=0)
    # /health/celery reports snapshots lagging once the oldest dirty session has waited this
    # many DIRTY_FLUSH_INTERVALs.
    snapshot_lag_intervals: float = Field(default=6.0, gt=0)
    snapshot_batch_size: int = Field(default=500, gt=0)
    snapshot_max_batches: int = Field(default=50, gt=0)
    snapshot_concurrency: int = Field(default=2, gt=0)
    # A session PostgreSQL refuses stays dirty and is retried after this many seconds,
    # doubling per refusal up to the max (see backend/durability/refused.py).
    snapshot_retry_seconds: float = Field(default=30.0, gt=0)
    snapshot_retry_max_seconds: float = Field(default=3_600.0, gt=0)
    dirty_flush_interval: float = Field(default=5.0, gt=0)
    # Each API replica publishes its heartbeat (open streams, reply counters, recent latencies)
    # for the operations page this often; it expires after 3 intervals without one.
    ops_heartbeat_seconds: float = Field(default=5.0, gt=0)
    archive_interval: float = Field(default=3_600.0, gt=0)
    cleanup_interval: float = Field(default=600.0, gt=0)
    summaries_hour: int = Field(default=2, ge=0, le=23)
    summaries_minute: int = Field(default=0, ge=0, le=59)
    archive_dir: str = "var/archive"
    archive_inactive_sessions_days: float = Field(default=30, ge=0)
    archive_batch_size: int = Field(default=200, gt=0)
    # Where new archives go (backend/archive/backends.py). Reading follows each archive's own
    # index row, so ARCHIVE_DIR and a configured bucket both stay readable after a switch.
    # Credentials and region come from the standard AWS_* variables.
    archive_backend: Literal["local", "s3"] = "local"
    archive_s3_bucket: str = ""
    archive_s3_prefix: str = "archive"
    archive_s3_endpoint_url: str = ""
    data_retention_days: float = Field(default=1_825, gt=0)
    purge_tombstone_days: float = Field(default=7, gt=0)
    stats_cache_ttl: int = Field(default=300, ge=0)
    summary_method: Literal["offline", "llm"] = "offline"
    # The summary provider; each unset one falls back to LLM_BASE_URL / LLM_MODEL / LLM_API_KEY.
    summary_llm_url: str | None = None
    summary_llm_model: str | None = None
    summary_llm_api_key: SecretStr | None = None
    summary_llm_timeout: float = Field(default=30.0, gt=0)

    # Metrics (backend/core/metrics.py): GET /metrics on every replica, behind this bearer
    # token when set; workers serve theirs on WORKER_METRICS_PORT (0: no exporter).
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    worker_metrics_port: int = Field(default=9540, ge=0, le=65_535)
    worker_metrics_addr: str = "0.0.0.0"

    # Auth.
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: str = "HS256"

    # Reply generation. "offline" is the built-in deterministic interviewer (no network);
    # "openai" streams from any OpenAI-compatible chat-completions endpoint.
    reply_generator: Literal["offline", "openai"] = "offline"
    # Pause between streamed chunks of the offline interviewer, for a typing feel in the UI.
    # 0 by default: tests and benchmarks rely on the whole reply being available at once.
    offline_chunk_delay_ms: int = Field(default=0, ge=0, le=5_000)
    llm_base_url: str = "https://api.openai.com/v1"
    # No default: a key is a secret and must come from the environment.
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    # Connect timeout and the longest silence tolerated between two streamed chunks.
    llm_timeout_seconds: float = Field(default=30.0, gt=0)
    # Who analyses the case for the triage result (backend/triage/llm_analyzer.py): "llm" asks
    # LLM_BASE_URL for a structured answer and falls back to "offline" (the deterministic
    # analysis) when it fails. Unset: "llm" with REPLY_GENERATOR=openai, else "offline".
    triage_analyzer: Literal["offline", "llm"] | None = None
    # The model for the triage analysis (None: LLM_MODEL); it must support structured outputs.
    triage_llm_model: str | None = None
    # The whole analysis call, connect to last byte; past it the offline result is used.
    triage_llm_timeout_seconds: float = Field(default=15.0, gt=0)

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def broker_behind_sentinel(self) -> bool:
        return self.broker_url.startswith(f"{SENTINEL_SCHEME}://")

    @field_validator("log_format", "triage_analyzer", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _default_log_format(self) -> Settings:
        if self.log_format is None:
            self.log_format = "text" if self.environment == "development" else "json"
        return self

    @model_validator(mode="after")
    def _default_triage_analyzer(self) -> Settings:
        if self.triage_analyzer is None:
            self.triage_analyzer = "llm" if self.reply_generator == "openai" else "offline"
        return self

    @model_validator(mode="after")
    def _check_archive_backend(self) -> Settings:
        if self.archive_backend == "s3" and not self.archive_s3_bucket:
            raise ValueError("ARCHIVE_BACKEND=s3 needs ARCHIVE_S3_BUCKET")
        return self

    @model_validator(mode="after")
    def _check_broker_url(self) -> Settings:
        # kombu takes the password and the database from the first sentinel's URL only: one
        # written differently on another would be silently ignored, so it is refused here.
        parts = [part.strip() for part in self.broker_url.split(";")]
        schemes = {urlsplit(part).scheme for part in parts}
        if len(parts) > 1 and schemes != {SENTINEL_SCHEME}:
            raise ValueError(
                "CELERY_BROKER_URL: several URLs (separated by ';') must all be sentinel:// ones"
            )
        if schemes != {SENTINEL_SCHEME}:
            return self
        first = urlsplit(parts[0])
        for i, part in enumerate(parts):
            url = urlsplit(part)
            if not url.hostname:
                raise ValueError(f"CELERY_BROKER_URL: {part!r} names no sentinel host")
            if i == 0:
                continue
            for what, mine, theirs in (
                ("database", url.path.strip("/"), first.path.strip("/")),
                ("password", url.password, first.password),
                ("user", url.username, first.username),
            ):
                if mine and mine != theirs:
                    raise ValueError(
                        f"CELERY_BROKER_URL: the {what} of every sentinel URL is the first one's "
                        "(write it on the first URL only)"
                    )
        return self

    @model_validator(mode="after")
    def _check_durability(self) -> Settings:
        # A task still running when the broker's visibility timeout passes is handed to a
        # second worker while the first goes on; keep the timeout well past any task.
        if self.celery_visibility_timeout <= self.celery_task_time_limit:
            raise ValueError("CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        no_key = self.llm_api_key is None or not self.llm_api_key.get_secret_value().strip()
        if self.reply_generator == "openai" and no_key:
            raise ValueError(
                "REPLY_GENERATOR=openai needs LLM_API_KEY (use any non-empty value for a local "
                "server that ignores keys), or set REPLY_GENERATOR=offline"
            )
        if self.triage_analyzer == "llm" and no_key:
            raise ValueError(
                "TRIAGE_ANALYZER=llm needs LLM_API_KEY (and LLM_BASE_URL), or set "
                "TRIAGE_ANALYZER=offline"
            )
        if self.environment == "development":
            # `.env.example` leaves JWT_SECRET empty: in development that means the default.
            if not self.jwt_secret.strip():
                self.jwt_secret = DEV_JWT_SECRET
        elif self.jwt_secret.strip().lower() in _PLACEHOLDER_SECRETS:
            raise ValueError(
                "JWT_SECRET is missing or a placeholder; set a random value of at least "
                f"{JWT_SECRET_MIN_BYTES} characters, e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if len(self.jwt_secret.encode()) < JWT_SECRET_MIN_BYTES:
            # Shorter HS256 keys are guessable, and PyJWT warns on every token signed with one.
            raise ValueError(
                f"JWT_SECRET must be at least {JWT_SECRET_MIN_BYTES} bytes (leave it empty in "
                "development for the built-in placeholder), e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
