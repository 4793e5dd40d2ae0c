"""What every tab shares: turning service errors into readable messages (kept on the page where the
user acted, or raised as gr.Error for API callers), running a service call in a thread while its steps
stream to the page, HTML escaping helpers, the studio's look."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import gradio as gr

from contracts.errors import ChainError
from evolve.errors import EvolveError
from metadata.errors import ContentError
from studio.errors import StudioError
from studio.generation import GenerationError
from studio.rules import RulesError

log = logging.getLogger("studio.ui")

# Errors whose message was written for a person (it names the problem and the fix): every layer's
# errors derive from StudioError. Anything else (a bare ValueError, KeyError...) is a bug.
READABLE_ERRORS: tuple[type[BaseException], ...] = (StudioError,)

F = TypeVar("F", bound=Callable[..., Any])


def as_gr_error(exc: BaseException) -> gr.Error:
    """The gr.Error a person sees for `exc`: its own message when it is one of ours, never a traceback."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, READABLE_ERRORS):
        return gr.Error(str(exc), title=_title(exc), print_exception=False)
    error_id = uuid.uuid4().hex[:8]  # names the log entry without showing the bug's text on the page
    log.error("internal error %s in the studio UI", error_id, exc_info=exc)
    return gr.Error(
        f"Internal error inside the studio; see the studio's log (id {error_id}). "
        "What you entered is kept: try again, and report it if it happens again.",
        print_exception=False,
    )


def _title(exc: BaseException) -> str:
    if isinstance(exc, ChainError):
        return "Chain"
    if isinstance(exc, ContentError):
        return "IPFS"
    if isinstance(exc, GenerationError):
        return "Generation"
    if isinstance(exc, EvolveError | RulesError):
        return "Evolution"
    return "Error"


def readable_errors(fn: F) -> F:
    """Wrap a UI handler (function or generator) so every error reaches the page as gr.Error."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise as_gr_error(exc) from None

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise as_gr_error(exc) from None

    return wrapper  # type: ignore[return-value]


def error_html(exc: BaseException) -> str:
    """The studio's own message for `exc` as a box under the control the user acted on. It stays until
    their next action there (a toast closes by itself after a few seconds, even under the mouse)."""
    error = as_gr_error(exc)
    title = error.title if error.title and error.title != "Error" else "Not done"
    return (
        f"<div class='studio-error' role='alert' data-title='{esc(title)}'><b>{esc(title)}</b> · "
        f"{esc(error.message)}</div>"
    )


def error_box(elem_id: str) -> gr.HTML:
    """An empty place for error_html, put right under the button whose errors it shows."""
    return gr.HTML("", elem_id=elem_id, elem_classes=["error-box"], padding=False)


def shows_errors(box: gr.components.Component, outputs: Sequence[gr.components.Component]) -> Callable[[F], F]:
    """Wrap a UI handler (function or generator) whose event writes `[*outputs, box]`.

    The handler returns (or yields) its values for `outputs` as usual; the wrapper empties `box` with
    them. On an error it writes the error into `box` (error_html) and leaves every other output as it
    was: no toast that vanishes, no bare "Error" badge on each output (what Gradio draws when a handler
    raises). API endpoints keep raising (readable_errors), so scripts still see the failure."""
    targets = list(outputs)

    def as_update(result: Any) -> dict[Any, Any]:
        values = result if len(targets) != 1 else (result,)
        if not isinstance(values, tuple | list) or len(values) != len(targets):
            raise TypeError(f"a handler for {len(targets)} outputs returned {result!r}")
        update = dict(zip(targets, values, strict=True))
        if not any(target is box for target in targets):
            update[box] = ""
        return update

    def decorate(fn: F) -> F:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                try:
                    for result in fn(*args, **kwargs):
                        yield as_update(result)
                except Exception as exc:
                    yield {box: error_html(exc)}

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return as_update(fn(*args, **kwargs))
            except Exception as exc:
                return {box: error_html(exc)}

        return wrapper  # type: ignore[return-value]

    return decorate


def api_endpoint(
    fn: Callable[..., Any],
    inputs: Sequence[gr.components.Component],
    outputs: Sequence[gr.components.Component],
    api_name: str,
    **kwargs: Any,
) -> None:
    """`fn` as the named API endpoint (gradio_client): a hidden button's event whose errors are raised
    as gr.Error, while the page's own event of the same function shows them in place (shows_errors)."""
    gr.Button(visible=False).click(readable_errors(fn), list(inputs), list(outputs), api_name=api_name, **kwargs)


_DONE = object()


def run_streaming(work: Callable[[Callable[[str, dict[str, Any]], None]], Any]) -> Iterator[tuple[str, Any]]:
    """Run `work(report)` in a thread; yield ("step", (name, details)) for each report as it happens,
    then ("result", value). An exception raised by `work` is re-raised here, after its steps."""
    events: queue.Queue[Any] = queue.Queue()
    outcome: dict[str, Any] = {}

    def report(step: str, details: dict[str, Any]) -> None:
        events.put((step, dict(details)))

    def target() -> None:
        try:
            outcome["value"] = work(report)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=target, name="studio-ui-work", daemon=True)
    thread.start()
    while True:
        event = events.get()
        if event is _DONE:
            break
        yield "step", event
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield "result", outcome.get("value")


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def short(value: str | None, keep: int = 10) -> str:
    """0x1234…abcd: enough to recognise a hash or CID; the full value stays in the title attribute."""
    if not value:
        return ""
    if len(value) <= keep * 2 + 1:
        return value
    return f"{value[:keep]}…{value[-6:]}"


def code(value: str | None, *, keep: int = 10) -> str:
    """A hash or CID as inline code, shortened, the full value on hover (escaped)."""
    if not value:
        return "—"
    return f'<code title="{esc(value)}">{esc(short(value, keep))}</code>'


def link(url: str, text: str) -> str:
    return f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer">{esc(text)}</a>'


THEME = gr.themes.Soft(
    primary_hue=gr.themes.colors.violet,
    secondary_hue=gr.themes.colors.slate,
    neutral_hue=gr.themes.colors.slate,
    # System fonts only: a web font would make every page load reach a third-party server.
    font=["Inter", "ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)

CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto !important; }
#studio-header { display: flex; align-items: baseline; gap: 14px; padding: 6px 2px 2px; }
#studio-header h1 { font-size: 1.55rem; margin: 0; letter-spacing: -0.01em; }
#studio-header .tagline { color: var(--body-text-color-subdued); font-size: 0.95rem; }
.step-list { list-style: none; padding: 0; margin: 0; }
.step-list li { padding: 6px 0; border-bottom: 1px solid var(--border-color-primary); }
.step-list .state { display: inline-block; width: 1.4em; }
.kv { border-collapse: collapse; width: 100%; }
.kv th { text-align: left; font-weight: 600; padding: 5px 12px 5px 0; white-space: nowrap; vertical-align: top;
         color: var(--body-text-color-subdued); width: 32%; }
.kv td { padding: 5px 0; word-break: break-all; }
.timeline { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
.timeline th, .timeline td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--border-color-primary);
                             vertical-align: top; }
.timeline.fit { table-layout: fixed; font-size: 0.88rem; }
.timeline.fit th, .timeline.fit td { padding: 6px 5px; }
.timeline.fit td { overflow-wrap: anywhere; }  /* headers stay whole words */
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 0.8rem; font-weight: 600;
         background: var(--color-accent-soft); color: var(--color-accent); }
.badge.bad { background: #fee2e2; color: #991b1b; }
.badge.good { background: #dcfce7; color: #166534; }
.muted { color: var(--body-text-color-subdued); }
footer { display: none !important; }
.studio-error { margin: 6px 0; padding: 10px 12px; border-radius: 8px; border: 1px solid #fca5a5;
                background: #fef2f2; color: #7f1d1d; line-height: 1.45; }
.studio-error b { color: #991b1b; }
.studio-notice { margin: 6px 0; padding: 10px 12px; border-radius: 8px; border: 1px solid #fcd34d;
                 background: #fffbeb; color: #78350f; line-height: 1.45; }
.studio-status { margin: 6px 0; padding: 8px 12px; border-radius: 8px; background: var(--color-accent-soft); }
.studio-status .spinner { display: inline-block; width: 0.85em; height: 0.85em; margin-right: 4px;
                         border: 2px solid currentColor; border-right-color: transparent; border-radius: 50%;
                         animation: studio-spin 0.9s linear infinite; vertical-align: -1px; }
@keyframes studio-spin { to { transform: rotate(360deg); } }
.studio-status progress { width: 140px; vertical-align: middle; }
.error-box:empty, .error-box:has(> div:empty) { display: none; }
/* Thumbnail grids keep thumbnail size whatever the number of images (Gradio stretches a lone one). */
.thumbs .grid-container { grid-template-columns: repeat(auto-fill, minmax(140px, 170px)) !important; }
/* Our tables draw their own row rules; Gradio's default cell borders would box every cell. */
.kv th, .kv td, .timeline th, .timeline td { border-left: none !important; border-right: none !important;
                                             border-top: none !important; }
.kv, .timeline { border: none !important; }
"""
