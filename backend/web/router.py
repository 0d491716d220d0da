"""The browser chat client: the page at `/`, its static files, and a development token route;
and the operations page at `/ops` (live charts for an operator token, `static/ops.js`).

The page is plain HTML, CSS and JavaScript served by the API itself: no front-end build step,
no third-party script, one origin (so the page needs no CORS and the API's bearer auth works
unchanged). How the page talks to the API, and which module does what, is explained at the top of
`static/app.js`.

Signing in: in development (`ENVIRONMENT=development`) the page asks for a name and gets a
token from `POST /api/dev/token` (how a name becomes a user id: `service.py`); that route is only
mounted in development, so anywhere else it answers 404 and the page asks for a bearer token to
paste instead. The page learns which of the two to show, and the longest message the API takes,
from attributes of its `<body>`, set here, so it never probes a route it may not have.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from backend.api.deps import RedisDep, SettingsDep
from backend.conversations.keys import ConversationKeys
from backend.conversations.ratelimit import FixedWindowLimiter
from backend.core.auth import create_token
from backend.core.errors import TriageError
from backend.core.http import BODY_ERRORS, error_responses
from backend.web.schemas import DevToken, DevTokenRequest
from backend.web.service import user_id_for_name

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page script is a few native ES modules (app.js imports the others, no build step); a
# module script only runs when served with a JavaScript media type.
_JS = "text/javascript; charset=utf-8"
_STATIC_TYPES = {
    "app.css": "text/css; charset=utf-8",
    **dict.fromkeys(
        (
            "app.js",
            "api.js",
            "auth.js",
            "composer.js",
            "render.js",
            "session.js",
            "sessions.js",
            "sse.js",
            "state.js",
            "ops.js",
        ),
        _JS,
    ),
    "ops.css": "text/css; charset=utf-8",
}
# Third-party files, vendored with their licenses (no CDN: the pages work offline).
_VENDOR_TYPES = {"uPlot.iife.min.js": _JS, "uPlot.min.css": "text/css; charset=utf-8"}
DEV_TOKEN_TTL_SECONDS = 12 * 3600

# Defence in depth for a page that shows what users and the model write: only our own script,
# style and API may load, nothing may frame the page, and no inline script can run even if
# some text were ever rendered as HTML (the script renders text with textContent only).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load: a redeploy must never leave an old script next to a new page.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["web"], include_in_schema=False)
dev_router = APIRouter(prefix="/api/dev", tags=["development"])


class NotFound(TriageError):
    status_code = 404
    code = "not_found"


@lru_cache(maxsize=4)  # read once per process: the page changes with a deploy, not a request
def _index_html(dev_login: bool, max_message_chars: int) -> str:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    html = html.replace('data-dev-login="false"', f'data-dev-login="{str(dev_login).lower()}"')
    # The page counts characters against the server's limit and refuses a longer message
    # itself (a textarea `maxlength` would cut a pasted text silently).
    return html.replace(
        'data-max-message-chars="4000"', f'data-max-message-chars="{max_message_chars}"'
    )


@router.get("/", response_class=HTMLResponse)
async def chat_page(settings: SettingsDep) -> HTMLResponse:
    """The browser chat client."""
    dev_login = settings.environment == "development"
    html = _index_html(dev_login, settings.max_message_chars)
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.get("/ops", response_class=HTMLResponse)
async def ops_page() -> HTMLResponse:
    """The operations page (its data needs an operator token: GET /api/ops/overview)."""
    html = (STATIC_DIR / "ops.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.get("/static/vendor/{name}")
async def vendor_file(name: Annotated[str, PathParam(max_length=64)]) -> FileResponse:
    """A vendored third-party file (a fixed list)."""
    media_type = _VENDOR_TYPES.get(name)
    if media_type is None:
        raise NotFound(f"no vendored file named {name!r}")
    return FileResponse(STATIC_DIR / "vendor" / name, media_type=media_type, headers=_PAGE_HEADERS)


@router.get("/static/{name}")
async def static_file(name: Annotated[str, PathParam(max_length=64)]) -> FileResponse:
    """One of the chat page's static files (a fixed list: nothing else on disk is reachable)."""
    media_type = _STATIC_TYPES.get(name)
    if media_type is None:
        raise NotFound(f"no static file named {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_PAGE_HEADERS)


@dev_router.post(
    "/token", response_model=DevToken, responses=error_responses(*BODY_ERRORS, 429, 503)
)
async def dev_token(
    body: DevTokenRequest, request: Request, settings: SettingsDep, redis: RedisDep
) -> DevToken:
    """Development only: a bearer token for the given name and tenant (the page signs in)."""
    if settings.environment != "development":
        # Only mounted in development; this guards an app wired by hand.
        raise NotFound("not found")
    # Per client address: anyone who reaches the route may sign in, but not mint tokens in bulk.
    # Behind a proxy this is the proxy's address unless uvicorn trusts its X-Forwarded-For.
    client = request.client.host if request.client else "unknown"
    limiter = FixedWindowLimiter(
        redis,
        settings.rate_limit_dev_tokens,
        settings.rate_limit_dev_tokens_window_seconds,
        "development tokens",
        "dev_tokens",
    )
    await limiter.hit(ConversationKeys(settings.key_prefix).dev_token_rate(client))
    user_id = user_id_for_name(body.user)
    token = create_token(
        settings, user_id, body.tenant, ttl_seconds=DEV_TOKEN_TTL_SECONDS, name=body.user
    )
    return DevToken(
        access_token=token,
        user=user_id,
        name=body.user,
        tenant=body.tenant,
        expires_in=DEV_TOKEN_TTL_SECONDS,
    )
