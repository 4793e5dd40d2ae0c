"""A living token as a collector reads it: the feeds it follows and its schedule, and each change in
words ("weather: frozen, because temperature = -5.0"), from the studio's own records of its tokens and
the collection's rules file. Tokens of another deployment, or static ones, have none."""

from __future__ import annotations

from dataclasses import dataclass, field

from metadata.animation import evolution_animation
from studio.records import Token
from studio.rules import Rules, load_collection, rules_path
from studio.rules.evaluation import trait_input
from studio.services.errors import StudioError
from studio.services.rules_files import summarize
from studio.services.studio import Studio
from studio.services.tokens import collection_query, timeline

MAX_VALUE_CHARS = 80
MAX_FRAMES = 200  # a token with more versions shows its latest 200


@dataclass(frozen=True)
class LivingInfo:
    """What a living token follows: its rules file's feeds (name -> type), schedule and traits."""

    rules_name: str
    feeds: dict[str, str]
    schedule: str
    frozen: bool
    traits: list[str] = field(default_factory=list)


def _token(studio: Studio, token_id: int, contract_address: str | None) -> Token | None:
    if contract_address is not None and contract_address.lower() != studio.chain.contract_address.lower():
        return None  # the gallery shows another deployment: the studio knows nothing of its rules
    with studio.db.session() as session:
        found: Token | None = session.scalar(collection_query(studio.identity).where(Token.token_id == int(token_id)))
    return found


def _rules(studio: Studio, name: str) -> Rules | None:
    try:
        if not rules_path(studio.settings.rules_dir, name).is_file():
            return None
        return load_collection(studio.settings.rules_dir, name, default_timezone=studio.settings.evolve.timezone)
    except (StudioError, OSError):
        return None  # a broken rules file is the Evolve tab's business; the gallery still shows the token


def living_info(studio: Studio, token_id: int, contract_address: str | None = None) -> LivingInfo | None:
    """The feeds and schedule a living token of this studio follows; None for static or unknown tokens."""
    token = _token(studio, token_id, contract_address)
    if token is None or not token.living or not token.rules_name:
        return None
    rules = _rules(studio, token.rules_name)
    if rules is None:
        return LivingInfo(token.rules_name, {}, "rules file missing", token.frozen)
    summary = summarize(token.rules_name, rules)
    return LivingInfo(token.rules_name, summary.feeds, summary.schedule, token.frozen, summary.traits)


def change_reasons(studio: Studio, token_id: int, contract_address: str | None = None) -> dict[int, list[str]]:
    """Per version after the mint: each trait's fragment and the feed value that chose it, in words."""
    token = _token(studio, token_id, contract_address)
    if token is None or not token.living or not token.rules_name:
        return {}
    rules = _rules(studio, token.rules_name)
    reasons: dict[int, list[str]] = {}
    for view in timeline(studio, token.token_id):
        traits = (view.state or {}).get("traits") or {}
        if view.version == 0 or not traits:
            continue
        lines = []
        for trait, fragment in sorted(traits.items()):
            line = f"{trait}: {fragment}"
            spec = rules.traits.get(trait) if rules is not None else None
            if spec is not None and view.feed_values:
                available, value = trait_input(view.feed_values, spec.input, token.token_id)
                if available:
                    text = str(value)
                    text = text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
                    line += f", because {spec.input} = {text}"
            lines.append(line)
        reasons[view.version] = lines
    return reasons


def evolution_webp(studio: Studio, token_id: int, contract_address: str | None = None) -> bytes | None:
    """The token's versions, oldest first, as an animated WebP at full size (lossless, looping; see
    metadata/animation.py); None for a token this studio did not mint or one that never changed."""
    token = _token(studio, token_id, contract_address)
    if token is None:
        return None
    views = timeline(studio, token.token_id)[-MAX_FRAMES:]
    if len(views) < 2:
        return None
    return evolution_animation([studio.store.cat(view.image_cid) for view in views], max_frames=MAX_FRAMES)
