from __future__ import annotations

import logging
import re

from asgi_correlation_id import CorrelationIdFilter

# EventSource cannot set headers, so the events stream also takes `?access_token=`; access logs
# must not keep the token (anyone reading the logs could replay it until it expires).
_TOKEN_IN_URL = re.compile(r"([?&]access_token=)[^&\s\"]*")


def redact_tokens(text: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Removes bearer tokens from URLs in log records (uvicorn's access log passes the path
    with its query string as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        return True


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s",
    )
    # Every line logged while serving a request carries its id (X-Request-ID, echoed to the
    # client); lines outside a request show "-".
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CorrelationIdFilter) for f in handler.filters):
            handler.addFilter(CorrelationIdFilter(default_value="-"))
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
