"""The collector gallery: plain server-rendered pages at /gallery and /gallery/{token_id}, no login,
no JavaScript. They read tokens exactly as a marketplace does (studio.services.gallery: tokenURI from
the chain, metadata and image from IPFS) and escape everything they show, since token metadata is
written by whoever minted it."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from contracts.errors import ChainError
from metadata.errors import ContentError
from metadata.ipfs_reader import SharedContent
from studio.services.errors import NotFoundError, StudioError
from studio.services.gallery import (
    HISTORY_PAGE_SIZE,
    CredentialsBadge,
    GalleryReader,
    GalleryToken,
    GalleryVersion,
    credentials_badges,
    gallery_reader,
)
from studio.services.living import LivingInfo, change_reasons, evolution_webp, living_info
from studio.services.studio import Studio

PAGE_SIZE = 24

STYLE = """
*{box-sizing:border-box}body{margin:0;font-family:ui-sans-serif,system-ui,"Segoe UI",Roboto,sans-serif;
background:#0f1115;color:#e8e8ee}a{color:#b9a6ff}header{padding:22px 32px;border-bottom:1px solid #262a33;
display:flex;gap:16px;align-items:baseline}header h1{margin:0;font-size:1.4rem}header .sub{color:#9aa0ad}
main{max-width:1180px;margin:0 auto;padding:24px 32px}.grid{display:grid;
grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:18px}.card{background:#171a21;border:1px solid #262a33;
border-radius:12px;overflow:hidden;text-decoration:none;color:inherit;display:block}.card img{width:100%;
aspect-ratio:1;object-fit:cover;display:block;background:#0b0c10}.card .t{padding:10px 12px}.card .t b{display:block}
.muted{color:#9aa0ad}.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:.8rem;
background:#2a2344;color:#cbbcff}.badge.bad{background:#3a1d22;color:#ffb4bd}.hero{display:grid;
grid-template-columns:minmax(260px,460px) 1fr;gap:28px}.hero img{width:100%;border-radius:12px;background:#0b0c10}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #262a33;
vertical-align:top;word-break:break-all}th{color:#9aa0ad;font-weight:600;white-space:nowrap;word-break:normal}
.versions{display:grid;gap:14px}.version{display:grid;grid-template-columns:120px 1fr;gap:16px;background:#171a21;
border:1px solid #262a33;border-radius:12px;padding:12px}.version img{width:120px;height:120px;object-fit:cover;
border-radius:8px}.attrs{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}.attr{background:#171a21;
border:1px solid #262a33;border-radius:10px;padding:6px 10px}.attr small{display:block;color:#9aa0ad}
.err{background:#3a1d22;border:1px solid #6b2a33;border-radius:10px;padding:12px 14px;color:#ffd5da}
nav.pages{margin-top:22px;display:flex;gap:12px}
.badge.living{background:#163626;color:#9ff0c0}.living-box{background:#12241b;border:1px solid #1f4a33;
border-radius:10px;padding:10px 14px;margin:10px 0}.why{margin:6px 0 0;padding-left:18px}
.evolution{width:100%;max-width:720px;border-radius:12px;background:#0b0c10;image-rendering:auto}
"""


def _living_badge(info: LivingInfo | None) -> str:
    """A living token's badge, with the feeds it follows and its schedule (none for static tokens)."""
    if info is None or info.frozen:
        return ""
    feeds = ", ".join(f"{esc(name)} ({esc(kind)})" for name, kind in info.feeds.items()) or "—"
    return (
        f"<div class='living-box' id='living'><span class='badge living'>living</span> it changes with the "
        f"world: follows <b>{feeds}</b>, checked {esc(info.schedule)}</div>"
    )


def _reasons_html(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f"<span class='muted'>why it changed</span><ul class='why'>{items}</ul>"


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _page(title: str, body: str, reader: GalleryReader | None, status: int = 200) -> HTMLResponse:
    image_sources = "'self'"
    if reader is not None:
        gateway = urlsplit(reader.ipfs.public_gateway)
        if gateway.scheme in ("http", "https") and gateway.netloc:
            image_sources += f" {gateway.scheme}://{gateway.netloc}"
    network = f"contract {esc(reader.address)}" if reader is not None else ""
    document = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{esc(title)}</title>
<style>{STYLE}</style></head><body><header><h1><a href="/gallery" style="color:inherit;text-decoration:none">
{esc(title)}</a></h1><span class="sub">{network}</span></header><main>{body}</main></body></html>"""
    headers = {
        "Content-Security-Policy": f"default-src 'none'; img-src {image_sources}; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(document, status_code=status, headers=headers)


def _image(url: str | None, alt: str) -> str:
    if not url:
        return '<div style="aspect-ratio:1;background:#0b0c10"></div>'
    return f'<img src="{esc(url)}" alt="{esc(alt)}" loading="lazy">'


def _attributes(token: GalleryToken) -> str:
    items = "".join(
        f'<div class="attr"><small>{esc(a.get("trait_type", ""))}</small>{esc(a.get("value"))}</div>'
        for a in token.attributes
    )
    return f'<div class="attrs">{items}</div>' if items else ""


def _credentials_html(badge: CredentialsBadge | None) -> str:
    """The version's "Content Credentials" badge: state and signer, and what failed when anything did."""
    if badge is None:
        return ""
    signer = f" · signed by {esc(badge.signer)}" if badge.signer else ""
    problems = f" <span class='muted'>{esc('; '.join(badge.problems))}</span>" if badge.problems else ""
    css = "badge" if badge.ok else "badge bad"
    return (
        f"<span class='muted'>Content Credentials</span> <span class='{css}' data-credentials='{esc(badge.state)}'>"
        f"{esc(badge.state)}{signer}</span>{problems}"
    )


def _version_html(
    reader: GalleryReader,
    version: GalleryVersion,
    badge: CredentialsBadge | None = None,
    reasons: list[str] | None = None,
) -> str:
    metadata = version.metadata or {}
    provenance: dict[str, Any] = metadata.get("provenance") or {}
    generation = provenance.get("generation") or {}
    details = [
        f"<b>Version {version.version}</b> <span class='muted'>· {_when(version.timestamp)} · block "
        f"{version.block_number}</span>",
        f"<span class='muted'>metadata</span> <a href=\"{esc(reader.ipfs.url('ipfs://' + version.metadata_cid))}\">"
        f"{esc(version.metadata_cid)}</a>",
        f"<span class='muted'>transaction</span> {esc(version.tx_hash)}",
    ]
    if generation.get("prompt"):
        details.append(f"<span class='muted'>prompt</span> {esc(generation['prompt'])}")
    if version.feed_snapshot:
        try:
            snapshot_url = reader.ipfs.url(version.feed_snapshot)
            details.append(f"<span class='muted'>caused by</span> <a href=\"{esc(snapshot_url)}\">feed snapshot</a>")
        except (StudioError, ContentError):
            details.append(f"<span class='muted'>caused by</span> {esc(version.feed_snapshot)}")
    if badge is not None:
        details.append(_credentials_html(badge))
    if version.error:
        details.append(f"<span class='badge bad'>{esc(version.error)}</span>")
    if reasons:
        details.append(_reasons_html(reasons))
    return (
        f'<div class="version" id="version-{version.version}">{_image(version.image_url, f"version {version.version}")}'
        f"<div>{'<br>'.join(details)}</div></div>"
    )


def create_gallery_router(studio: Studio) -> APIRouter:
    """The /gallery routes over the studio's (or the configured gallery network's) contract."""
    router = APIRouter()
    shared = SharedContent()  # one content cache and one bound on gateway fetches for all requests

    def reader_or_error() -> tuple[GalleryReader | None, HTMLResponse | None]:
        try:
            return gallery_reader(studio, shared), None
        except StudioError as exc:
            body = f'<div class="err">The gallery cannot reach its chain: {esc(exc)}</div>'
            return None, _page("Gallery", body, None, status=503)

    @router.get("/gallery", response_class=HTMLResponse)
    def gallery_index(page: int = Query(1, ge=1, le=100_000)) -> HTMLResponse:
        reader, failure = reader_or_error()
        if failure is not None or reader is None:
            return failure  # type: ignore[return-value]
        try:
            title = reader.collection_name()
            total, cards = reader.cards(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        except (StudioError, ChainError, ContentError) as exc:
            return _page("Gallery", f'<div class="err">{esc(exc)}</div>', reader, status=502)
        items = []
        for card in cards:
            if card.token is None:
                items.append(
                    f'<a class="card" href="/gallery/{card.token_id}">{_image(None, "")}<div class="t">'
                    f"<b>#{card.token_id}</b><span class='badge bad'>{esc(card.error)}</span></div></a>"
                )
                continue
            token = card.token
            frozen = " <span class='badge'>frozen</span>" if token.frozen else ""
            if not token.frozen and living_info(studio, token.token_id, reader.address) is not None:
                frozen = " <span class='badge living'>living</span>"
            items.append(
                f'<a class="card" href="/gallery/{token.token_id}" data-token="{token.token_id}">'
                f"{_image(token.image_url, token.name)}<div class='t'><b>{esc(token.name)}</b>"
                f"<span class='muted'>#{token.token_id} · version {token.version}</span>{frozen}</div></a>"
            )
        pages = []
        if page > 1:
            pages.append(f'<a href="/gallery?page={page - 1}">← newer</a>')
        if page * PAGE_SIZE < total:
            pages.append(f'<a href="/gallery?page={page + 1}">older →</a>')
        empty = "<p class='muted'>No token minted yet.</p>" if total == 0 else ""
        body = (
            f"<p class='muted'>{total} token{'s' if total != 1 else ''}</p>{empty}"
            f"<div class='grid'>{''.join(items)}</div><nav class='pages'>{''.join(pages)}</nav>"
        )
        return _page(title, body, reader)

    @router.get("/gallery/{token_id}/evolution.webp")
    def gallery_evolution(token_id: int) -> Response:
        """The token's versions as a full-size animated WebP (tokens this studio minted)."""
        reader, failure = reader_or_error()
        if failure is not None or reader is None:
            return failure  # type: ignore[return-value]
        data = evolution_webp(studio, token_id, reader.address)
        if data is None:
            return Response("No evolution to show for this token.\n", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/webp", headers={"Cache-Control": "no-cache"})

    @router.get("/gallery/{token_id}", response_class=HTMLResponse)
    def gallery_token(token_id: int, page: int = Query(1, ge=1, le=100_000)) -> HTMLResponse:
        reader, failure = reader_or_error()
        if failure is not None or reader is None:
            return failure  # type: ignore[return-value]
        try:
            token = reader.token(token_id)
            count, history = reader.history(token_id, limit=HISTORY_PAGE_SIZE, offset=(page - 1) * HISTORY_PAGE_SIZE)
        except NotFoundError as exc:
            return _page("Gallery", f'<div class="err">{esc(exc)}</div>', reader, status=404)
        except (StudioError, ChainError, ContentError) as exc:
            return _page("Gallery", f'<div class="err">{esc(exc)}</div>', reader, status=502)
        state = "<span class='badge'>frozen: it will never change again</span>" if token.frozen else ""
        rows = [
            ("Owner", esc(token.owner)),
            ("Version", esc(token.version)),
            ("tokenURI", esc(token.token_uri)),
            ("Metadata", f'<a href="{esc(reader.ipfs.url(token.token_uri))}">{esc(token.metadata_cid)}</a>'),
            ("Contract", esc(reader.address)),
        ]
        table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        try:
            badges = credentials_badges(reader, token.token_id, history)
        except StudioError:
            badges = {}  # the history still shows without its badges
        reasons = change_reasons(studio, token.token_id, reader.address)
        versions = "".join(
            _version_html(reader, v, badges.get(v.version), reasons.get(v.version)) for v in history
        )  # newest first
        pages = []
        if page > 1:
            pages.append(f'<a href="/gallery/{token.token_id}?page={page - 1}#history">← newer</a>')
        if page * HISTORY_PAGE_SIZE < count:
            pages.append(f'<a href="/gallery/{token.token_id}?page={page + 1}#history">older →</a>')
        body = (
            f'<div class="hero"><div>{_image(token.image_url, token.name)}</div><div>'
            f"<h2 id='token-name'>{esc(token.name)} <span class='muted'>#{token.token_id}</span></h2>{state}"
            f"{_living_badge(living_info(studio, token.token_id, reader.address))}"
            f"<p>{esc(token.description)}</p>{_attributes(token)}<table>{table}</table></div></div>"
            + (
                f"<h3>Evolution</h3><img id='evolution' class='evolution' src='/gallery/{token.token_id}/"
                f"evolution.webp?v={token.version}' alt='every version of {esc(token.name)}, oldest first'>"
                if count > 1 and reasons
                else ""
            )
            + f"<h3>History · {count} version{'s' if count != 1 else ''}</h3>"
            f"<div class='versions' id='history'>{versions}</div><nav class='pages'>{''.join(pages)}</nav>"
        )
        return _page(f"{token.name} · #{token.token_id}", body, reader)

    return router
