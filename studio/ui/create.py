"""The Create tab: prompt to draft (with live progress), variations of a draft, the drafts history."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.records import Draft
from studio.services.drafts import (
    ASPECT_RATIOS,
    adjust_size_and_steps,
    aspect_size,
    create_draft,
    create_variation,
    draft_png,
    get_draft,
    list_drafts,
    random_seed,
)
from studio.services.errors import InvalidInputError
from studio.services.overview import model_status
from studio.services.studio import Studio
from studio.ui.common import api_endpoint, code, error_box, esc, readable_errors, run_streaming, shows_errors

SIDES = (64, 128, 256, 384, 512, 640, 768, 896, 1024)


@dataclass
class CreateTab:
    banner: gr.HTML
    banner_html: Callable[[], str]
    gallery: gr.Gallery
    draft: gr.Dropdown
    shown_ids: gr.State
    refresh: Callable[..., tuple[Any, Any, list[int]]]


def exports_dir(studio: Studio) -> Path:
    """Where draft PNGs are written for the browser to show and download (an allowed path of the app)."""
    folder = studio.settings.data_dir / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def draft_file(studio: Studio, draft: Draft, png: bytes | None = None) -> str:
    """The draft's PNG, with its parameters chunk, as a file named after the draft and its seed."""
    path = exports_dir(studio) / f"draft-{draft.id}-seed-{draft.seed}.png"
    if not path.exists():
        data = png if png is not None else studio.store.cat(draft.image_cid)
        temp = path.with_suffix(".tmp")
        temp.write_bytes(data)
        temp.replace(path)
    return str(path)


def draft_label(draft: Draft) -> str:
    prompt = " ".join(draft.prompt.split())
    return f"#{draft.id} · {prompt[:48]}{'…' if len(prompt) > 48 else ''}"


def draft_choices(studio: Studio) -> list[tuple[str, int]]:
    return [(draft_label(d), d.id) for d in list_drafts(studio)]


def drafts_gallery(studio: Studio) -> list[tuple[str, str]]:
    return [(draft_file(studio, d), draft_label(d)) for d in list_drafts(studio, limit=24)]


def parameters_html(draft: Draft, warnings: list[str] | None = None) -> str:
    record = draft.provenance or {}
    rows = [
        ("Draft", f"#{draft.id}" + (f" (variation of #{draft.parent_id})" if draft.parent_id else "")),
        ("Prompt", esc(draft.prompt)),
        ("Negative prompt", esc(draft.negative_prompt) or "—"),
        ("Seed", esc(draft.seed)),
        ("Steps", esc(draft.steps)),
        ("Guidance", esc(draft.guidance_scale)),
        ("Size", f"{draft.width} × {draft.height}"),
        ("Strength", esc(draft.strength) if draft.strength is not None else "—"),
        ("Model", esc(record.get("model_id"))),
        ("Preset / decoder", f"{esc(record.get('preset'))} / {esc(record.get('decoder'))}"),
        ("Device", f"{esc(record.get('device'))} ({esc(record.get('dtype'))})"),
        ("Image CID", code(draft.image_cid, keep=14)),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    notes = "".join(f'<p class="muted">⚠ {esc(w)}</p>' for w in warnings or [])
    return f'<table class="kv">{body}</table>{notes}'


def stage_html(stage: str, details: dict[str, Any]) -> str:
    """One line for the stage the generation is in, as the engine reports it (never a guess)."""
    if stage == "waiting":
        ahead = int(details.get("ahead", 0))
        text = (
            f"Waiting for its turn: {ahead} generation{'s' if ahead != 1 else ''} ahead of this one "
            f"(queue position {int(details.get('position', ahead + 1))})"
        )
    elif stage == "downloading":
        done, total = int(details.get("done_bytes") or 0), int(details.get("total_bytes") or 0)
        bar = f" <progress value='{done}' max='{max(total, 1)}'></progress>" if total else ""
        text = f"Downloading the model {esc(details.get('model'))}: {esc(details.get('summary'))}{bar}"
        if "position" in details:  # a request waiting for the one that fetches the model
            text += f" (this generation waits for it: queue position {int(details['position'])})"
    elif stage == "loading":
        text = f"Loading the model {esc(details.get('model'))} (once per start of the studio)"
    elif stage == "denoising":
        step, total = int(details.get("step", 0)), int(details.get("total", 0))
        bar = f" <progress value='{step}' max='{max(total, 1)}'></progress>" if total else ""
        text = f"Denoising: step {step} of {total}{bar}"
    else:
        text = {
            "encoding prompt": "Encoding the prompt (text encoder)",
            "encoding image": "Encoding the draft (VAE encoder)",
            "decoding": "Decoding the image",
            "saving": "Saving the draft (PNG with its parameters)",
        }.get(stage, esc(stage))
    return f"<div class='studio-status' data-stage='{esc(stage)}'><span class='spinner'></span> {text}</div>"


def model_banner_html(studio: Studio) -> str:
    """Said before the first click: the model is missing (and how to get one), or will be downloaded."""
    status = model_status(studio)
    if status.state == "missing":
        return (
            "<div class='studio-error' data-model='missing'><b>Generating needs a model first.</b> "
            f"{esc(status.message)}</div>"
        )
    if status.state == "download":
        return f"<div class='studio-notice' data-model='download'>{esc(status.message)}</div>"
    return ""


def build(studio: Studio) -> CreateTab:
    model = studio.settings.model
    sides = [s for s in SIDES if s <= model.max_side] or [model.max_side]
    default_side = 512 if 512 in sides else sides[-1]
    banner = gr.HTML("", elem_id="model-banner", padding=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            prompt = gr.Textbox(
                label="Prompt", lines=3, placeholder="a lighthouse on a cliff at dusk, oil painting", elem_id="prompt"
            )
            negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="blurry, text, watermark")
            with gr.Row():
                seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, minimum=-1, scale=4)
                dice = gr.Button("🎲 Random seed", scale=1, min_width=120)
            with gr.Row():
                steps = gr.Number(
                    label=f"Steps (0 = the model's usual; up to {model.max_steps})",
                    value=0,
                    precision=0,
                    elem_id="steps",
                )
                preset = gr.Radio(
                    ["fast", "quality"],
                    value=model.preset,
                    label="Preset",
                    info="fast: tiny decoder; quality: full VAE",
                )
            with gr.Row():
                aspect = gr.Dropdown(list(ASPECT_RATIOS), value="1:1 square", label="Aspect ratio", elem_id="aspect")
                long_side = gr.Dropdown(sides, value=default_side, label="Long side (pixels)", elem_id="long-side")
            with gr.Row():
                width = gr.Number(value=default_side, label="Width", precision=0, elem_id="width")
                height = gr.Number(value=default_side, label="Height", precision=0, elem_id="height")
            gr.Markdown(f"<span class='muted'>Model: <code>{esc(model.model_id)}</code></span>")
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            generate_status = gr.HTML("", elem_id="generate-status", padding=False)
            generate_error = error_box("generate-error")
            with gr.Accordion("Variation of the selected draft (img2img)", open=False):
                draft = gr.Dropdown(
                    [], label="Selected draft", interactive=True, allow_custom_value=True, elem_id="create-draft"
                )
                strength = gr.Slider(
                    label="Strength (lower keeps more of the draft)", minimum=0.05, maximum=1.0, step=0.05, value=0.5
                )
                gr.Markdown(
                    "<span class='muted'>Uses the Prompt above: change it to steer the variation, "
                    "or leave the draft's own.</span>"
                )
                vary = gr.Button("Make a variation", elem_id="vary")
                vary_status = gr.HTML("", elem_id="vary-status", padding=False)
                vary_error = error_box("vary-error")
        with gr.Column(scale=6):
            image = gr.Image(label="Draft", type="filepath", interactive=False, height=460, elem_id="draft-image")
            download = gr.File(label="PNG with its parameters", interactive=False)
            params = gr.HTML(elem_id="draft-params")
    gallery = gr.Gallery(
        label="Drafts",
        columns=8,
        height=220,
        allow_preview=False,
        object_fit="cover",
        elem_id="drafts-gallery",
        elem_classes=["thumbs"],
    )
    shown_ids = gr.State([])

    outputs = [image, download, params, gallery, draft, shown_ids]

    def _refresh(selected: int | None = None) -> tuple[Any, Any, list[int]]:
        drafts = list_drafts(studio, limit=24)
        items = [(draft_file(studio, d), draft_label(d)) for d in drafts]
        choices = draft_choices(studio)
        value = selected if selected is not None else (choices[0][1] if choices else None)
        return gr.Gallery(value=items), gr.Dropdown(choices=choices, value=value), [d.id for d in drafts]

    def _after(result: Any) -> tuple[Any, ...]:
        path = draft_file(studio, result.draft, result.png)
        gallery_update, draft_update, ids = _refresh(result.draft.id)
        return path, path, parameters_html(result.draft, result.warnings), gallery_update, draft_update, ids

    def _seed(seed_value: Any) -> int | None:
        return None if seed_value is None or int(seed_value) < 0 else int(seed_value)

    def _generate(report, prompt_text, negative_text, seed_value, steps_value, w, h, preset_value):
        if not (prompt_text or "").strip():
            raise InvalidInputError("Type a prompt first: describe the image you want.")
        sized = adjust_size_and_steps(w, h, steps_value, max_side=model.max_side, max_steps=model.max_steps)
        result = create_draft(
            studio,
            prompt=prompt_text,
            negative_prompt=negative_text or "",
            seed=_seed(seed_value),
            steps=sized.steps,
            width=sized.width,
            height=sized.height,
            preset=preset_value,
            on_stage=report,
        )
        # What was changed is said beside the draft, and the form shows the values used.
        return dataclasses.replace(result, warnings=[*sized.notes, *result.warnings])

    def _vary(report, draft_id, strength_value, seed_value, prompt_text=None):
        if draft_id is None:
            raise InvalidInputError("Choose a draft to vary: pick one in 'Selected draft' or click it in Drafts.")
        return create_variation(
            studio,
            int(draft_id),
            strength=float(strength_value),
            seed=_seed(seed_value),
            prompt=prompt_text or None,  # a new prompt steers the variation; empty keeps the draft's
            on_stage=report,
        )

    def _synced(result: Any, steps_value: Any = None) -> tuple[Any, ...]:
        """The form as the shown draft was made: prompt, size and steps."""
        draft_row = result.draft
        steps_shown = gr.skip() if steps_value is None else (draft_row.steps if steps_value else 0)
        return draft_row.prompt, draft_row.width, draft_row.height, steps_shown

    def _streamed(work: Callable[..., Any], steps_value: Any = None):
        """The generation's real stages, drawn once in the status line under the button, then the draft."""
        try:
            for kind, payload in run_streaming(work):
                if kind == "step":
                    yield (*[gr.skip()] * len(outputs), stage_html(*payload), gr.skip(), *[gr.skip()] * 4)
                else:
                    yield (
                        *_after(payload),
                        f"<div class='studio-status' data-stage='done'>✔ Draft #{payload.draft.id} is ready.</div>",
                        model_banner_html(studio),
                        *_synced(payload, steps_value),
                    )
        except Exception:
            yield (*[gr.skip()] * len(outputs), "", model_banner_html(studio), *[gr.skip()] * 4)
            raise

    def on_generate(prompt_text, negative_text, seed_value, steps_value, w, h, preset_value):
        return _after(_generate(None, prompt_text, negative_text, seed_value, steps_value, w, h, preset_value))

    def on_generate_page(*args):
        steps_value = args[3]
        yield from _streamed(lambda report: _generate(report, *args), steps_value if steps_value else 0)

    def on_vary(draft_id, strength_value, seed_value, prompt_text=None):
        return _after(_vary(None, draft_id, strength_value, seed_value, prompt_text))

    def on_vary_page(*args):
        yield from _streamed(lambda report: _vary(report, *args))

    @readable_errors
    def on_aspect(aspect_name, side):
        return aspect_size(aspect_name, int(side), model.max_side)

    @readable_errors
    def on_select(ids: list[int], evt: gr.SelectData):
        draft_id = ids[evt.index] if evt.index is not None and evt.index < len(ids) else None
        if draft_id is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        chosen = get_draft(studio, draft_id)
        path = draft_file(studio, chosen)
        return draft_id, path, path, parameters_html(chosen), chosen.prompt

    @readable_errors
    def on_show(draft_id):
        if draft_id is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        chosen = get_draft(studio, int(draft_id))
        path = draft_file(studio, chosen)
        return path, path, parameters_html(chosen), chosen.prompt

    generate_inputs = [prompt, negative, seed, steps, width, height, preset]
    form = [prompt, width, height, steps]  # kept in step with the draft shown
    dice.click(lambda: random_seed(), None, seed, api_name="random_seed", queue=False)
    # Up to four requests reach the engine at once: it runs them in turn and each waiting one shows
    # its place in the line (the engine's queue, which the evolution scheduler shares).
    for trigger in (generate.click, prompt.submit):
        trigger(
            shows_errors(generate_error, [*outputs, generate_status, banner, *form])(on_generate_page),
            generate_inputs,
            [*outputs, generate_status, banner, *form, generate_error],
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=4,
            concurrency_id="generation",
        )
    api_endpoint(on_generate, generate_inputs, outputs, "generate", concurrency_id="generation")
    vary.click(
        shows_errors(vary_error, [*outputs, vary_status, banner, *form])(on_vary_page),
        [draft, strength, seed, prompt],
        [*outputs, vary_status, banner, *form, vary_error],
        api_visibility="private",
        show_progress="hidden",
        concurrency_id="generation",
    )
    api_endpoint(on_vary, [draft, strength, seed, prompt], outputs, "variation", concurrency_id="generation")
    gallery.select(on_select, [shown_ids], [draft, image, download, params, prompt], api_visibility="private")
    draft.input(on_show, [draft], [image, download, params, prompt], api_visibility="private")
    for control in (aspect, long_side):
        control.input(on_aspect, [aspect, long_side], [width, height], api_visibility="private", queue=False)

    @readable_errors
    def on_png(draft_id):
        """The draft's PNG bytes as a file (API: the PNG with its parameters chunk)."""
        draft_png(studio, int(draft_id))  # raises NotFoundError for an unknown draft
        return draft_file(studio, get_draft(studio, int(draft_id)))

    api_png = gr.File(visible=False)
    api_draft = gr.Number(visible=False, precision=0)
    gr.Button(visible=False).click(on_png, [api_draft], [api_png], api_name="draft_png")
    return CreateTab(
        banner=banner,
        banner_html=lambda: model_banner_html(studio),
        gallery=gallery,
        draft=draft,
        shown_ids=shown_ids,
        refresh=_refresh,
    )
