"""What serving the demo to strangers needs beside the page: a bounded queue (in total and per client), no
uploads (the page has no upload control, so the total it accepts is none), styles that read on a phone with AA
contrast, one folder of its own for every file the app writes, removed on every kind of stop, and of a visitor's
overlapping requests to one listener only the newest answering (``NewestOnly``).

    with serving_folder() as work:             # GRADIO_TEMP_DIR inside it; gone after Ctrl-C, SIGTERM, SIGHUP,
        demo = build_demo(runs, work_dir=work)  # and a killed server's at the next start
        demo.queue(max_size=QUEUE_SIZE).launch(**launch_kwargs(demo))
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

QUEUE_SIZE = 64       # events waiting in all (gradio answers "queue full" beyond)
PER_CLIENT = 8        # events one client may have queued or running; a page needs at most four at once
MAX_UPLOAD = "1mb"    # gradio's own cap on one file, kept although the upload route is closed
FOLDER = re.compile(r"mergan-demo-(\d+)-[A-Za-z0-9_]+")

# Digits large enough to read; tables that fit a phone's width; one font with every glyph (the bundled semibold
# face lacks small letters' capitals: it drew "GᴀN"); AA contrast where the theme's greys and footer fall short.
CSS = """
#sft-image img, #mergan-image img, #live-sft img, #live-ra img { image-rendering: pixelated; width: 100%;
  height: auto; }
/* The toolbar above a picture, not over its top row of digits. */
#sft-image .icon-button-wrapper, #mergan-image .icon-button-wrapper, #live-sft .icon-button-wrapper,
#live-ra .icon-button-wrapper, #timeline-image .icon-button-wrapper, #numbers-chart .icon-button-wrapper,
#numbers-grid .icon-button-wrapper, #numbers-gif .icon-button-wrapper { position: static;
  justify-content: flex-end; margin: 0 0 4px 0; }
table.fit { width: 100%; table-layout: fixed; border-collapse: collapse; font-size: 0.9em; }
table.fit th, table.fit td { overflow-wrap: anywhere; padding: 3px 4px; border-bottom: 1px solid #d4d4d8;
  text-align: right; vertical-align: top; }
table.fit th[scope=row], table.fit thead th:first-child { text-align: left; }
table.fit.long-rows thead th:first-child { width: 34%; }
table.fit caption { text-align: left; font-weight: 600; padding: 8px 0 4px 0; }
@media (max-width: 640px) { table.fit { font-size: 0.72em; } }
#numbers-chart img { max-width: 640px; margin: 0 auto; }
.metric-help { font-size: 0.9em; padding-left: 1.1em; }
.numbers details summary { cursor: pointer; font-weight: 600; padding: 6px 0; }
.lesson-status progress { width: 100%; height: 14px; accent-color: #3730a3; }
.lesson-status progress::-webkit-progress-value { background: #3730a3; }
.lesson-status progress::-webkit-progress-bar { background: #e0e7ff; }
.lesson-status p { margin: 4px 0; }
/* Every tab in reach on a phone: gradio moves the tabs that its hidden measuring copy finds too wide into a "⋯"
   menu; the copy is measured at no width, so all tabs stay in the bar, which wraps instead. */
#tabs .tab-container.visually-hidden button { padding: 0 !important; font-size: 1px !important; }
#tabs [role=tablist] { flex-wrap: wrap; height: auto; }
#tabs [role=tablist] button { padding-left: 5px; padding-right: 5px; }
.gradio-container, .gradio-container .prose, .gradio-container h1, .gradio-container h2, .gradio-container h3,
.gradio-container strong { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
sans-serif !important; }
footer, footer a, footer button, footer span { color: #3f3f46 !important; }
"""


def theme():
    """Gradio's default theme in indigo with AA contrast: white on the primary buttons, the selected tab's text,
    and the greys of secondary text (the default subdued grey is 2.5:1 on white)."""
    import gradio as gr

    return gr.themes.Default(primary_hue="indigo").set(
        button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
        button_primary_text_color="white", color_accent="*primary_700", color_accent_soft="*primary_50",
        body_text_color_subdued="*neutral_600", block_info_text_color="*neutral_600",
        block_label_text_color="*neutral_700", link_text_color="*primary_700")


def client_of(scope) -> str:
    """Who is asking: the first address a proxy names (a Space's front end sets X-Forwarded-For), else the peer."""
    for key, value in scope.get("headers", []):
        if key == b"x-forwarded-for":
            return value.decode("latin-1").split(",")[0].strip()
    return (scope.get("client") or ("?",))[0]


class ClientLimits:
    """ASGI middleware in front of the app: the upload route is closed, and a client with ``per_client`` events
    queued or running gets 429 with one line instead of another place in the queue."""

    def __init__(self, app, demo, per_client: int = PER_CLIENT):
        self.app, self.demo, self.per_client = app, demo, per_client

    def jobs(self, client: str) -> int:
        # gradio keeps every event it holds (waiting or running) with its request until the event ends
        events = getattr(getattr(self.demo, "_queue", None), "event_ids_to_events", {})
        return sum(1 for e in list(events.values())
                   if (r := getattr(e, "request", None)) is not None and client_of(r.scope) == client)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"].rstrip("/")
            if path.endswith("/upload"):
                return await _refuse(send, 403, "This app takes no uploads.")
            if path.endswith("/queue/join") and self.jobs(client_of(scope)) >= self.per_client:
                return await _refuse(send, 429, f"You have {self.per_client} requests queued or running; wait for "
                                                f"them to finish.")
        await self.app(scope, receive, send)


class NewestOnly:
    """Per visitor, only the newest of their overlapping requests to one listener answers.

    Gradio's page defers a trigger that fires while the listener's request is pending ("always_last"), but one
    that fires in the moment between the request being gathered and being sent runs beside it, and with a
    ``concurrency_limit`` above 1 the two can finish in either order: the older one, finishing last, would
    overwrite the newer picture (the seed box says 5, the picture was drawn with the old seed). Each request
    takes a ticket when it starts; one that is no longer the newest when it ends answers ``gr.skip()``.

        newest = NewestOnly()
        ticket = newest.start(request.session_hash)
        ...
        if not newest.is_newest(request.session_hash, ticket): return skipped outputs

    ``client`` None (a direct call, no session) is always the newest. At most ``max_clients`` visitors are
    remembered (the oldest forgotten first); a forgotten visitor's request counts as the newest.
    """

    def __init__(self, max_clients: int = 4096):
        self.max_clients = max_clients
        self._tickets: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, client: str | None) -> int:
        """A new request of ``client``: its ticket (1, 2, ... per client)."""
        if client is None:
            return 0
        with self._lock:
            ticket = self._tickets.pop(client, 0) + 1
            self._tickets[client] = ticket
            while len(self._tickets) > self.max_clients:
                self._tickets.popitem(last=False)
            return ticket

    def is_newest(self, client: str | None, ticket: int) -> bool:
        """Whether no request of ``client`` started after the one holding ``ticket``."""
        if client is None:
            return True
        with self._lock:
            return self._tickets.get(client, ticket) == ticket


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def launch_kwargs(demo, per_client: int = PER_CLIENT) -> dict:
    """``demo.launch``'s arguments for serving: styles, the upload cap, the client limits; no share link, no SSR."""
    from starlette.middleware import Middleware

    return {"css": CSS, "theme": theme(), "max_file_size": MAX_UPLOAD, "ssr_mode": False, "share": False,
            "app_kwargs": {"middleware": [Middleware(ClientLimits, demo=demo, per_client=per_client)]}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(base: Path) -> list[Path]:
    """Remove the folders of demo servers that were killed (their process is gone); returns them."""
    removed = []
    for p in base.glob("mergan-demo-*"):
        m = FOLDER.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink() and p.stat().st_uid == os.getuid() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextmanager
def serving_folder(base: str | Path | None = None):
    """A folder of this server's own (gradio's cache inside it, as ``GRADIO_TEMP_DIR``) that is removed when the
    block ends, also on SIGTERM and SIGHUP (turned into the Ctrl-C that stops gradio); the folders of servers
    that were killed outright are removed when the next one starts."""
    base = Path(base or tempfile.gettempdir())
    remove_stale(base)
    work = Path(tempfile.mkdtemp(prefix=f"mergan-demo-{os.getpid()}-", dir=base))
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous_tmp = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    for s in before:
        signal.signal(s, interrupt)
    try:
        yield work
    except KeyboardInterrupt:
        pass
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if previous_tmp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_tmp
        shutil.rmtree(work, ignore_errors=True)
