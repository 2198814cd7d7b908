"""The Gradio page of `vrp-sam app`: annotate references (brush mask, scribble, box, points),
add them for k-shot, drop targets, see and download the masks. The work is `session`'s; each
handler shows an expected error on the page, in the status line, never as a traceback."""

from __future__ import annotations

import functools
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np

from vrp_sam_jax.app import session, toy_model
from vrp_sam_jax.errors import EXPECTED_ERRORS, InputError
from vrp_sam_jax.names import CONDITIONS, GP_PROMPTS, METHODS
from vrp_sam_jax.storage.image_io import overlay

HOW = {
    "mask": "paint over the whole object with the brush",
    "scribble": "draw a few strokes on the object with the brush",
    "box": "click two opposite corners of the object's box on the preview",
    "point": "click on the object on the preview, once per point",
}
METHOD_LABELS = {"vrp": "VRP-SAM (the trained VRP encoder)",
                 "gp-sam": "GP-SAM (no training: SAM prompted from the backbone's prior)"}


def _error(message: str) -> str:
    return f"**Error:** {message}"


def _guarded(outputs: int) -> Callable:
    """A handler whose expected errors (bad input, unreadable files) become the status line
    (its last output), every other output left as it was."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def handler(*args):
            try:
                return fn(*args)
            except EXPECTED_ERRORS as e:
                return (*[gr.skip()] * (outputs - 1), _error(str(e)))
        return handler
    return wrap


def _files(value) -> list[str]:
    """Uploaded files' paths, whatever form the file component gives them in."""
    if not value:
        return []
    return [getattr(v, "name", v) for v in (value if isinstance(value, list) else [value])]


def build(segmenter: session.Segmenter | toy_model.Preparation, description: str,
          workspace: str | Path | None = None) -> gr.Blocks:
    """The page over `segmenter`, or over the toy model a `toy_model.Preparation` is making ready
    (the page shows its progress, and enables segmenting when it is ready); `description`
    names the model (and says when it is a toy). Results are written under `workspace` (a
    temporary folder by default)."""
    workspace = Path(workspace or tempfile.mkdtemp(prefix="vrp-sam-app-"))
    preparing = isinstance(segmenter, toy_model.Preparation)
    is_toy = preparing or toy_model.is_toy(segmenter.model)
    # a backbone and SAM without a trained encoder run GP-SAM only (the toy has an encoder)
    methods = [m for m in METHODS
               if m != "vrp" or preparing or "encoder" in segmenter.model.params]

    def ready() -> session.Segmenter:  # an InputError saying how far while preparing
        return segmenter.result() if preparing else segmenter

    def poll():
        """The preparation's line; when it is over, segmenting enabled and the timer off."""
        return (segmenter.status(), gr.Button(interactive=segmenter.ready()),
                gr.Timer(active=not segmenter.done()))

    def shown(image, kind, drawn, clicks):
        """The preview, enlarged where the reference is small (clicks are divided back)."""
        return session.enlarge(session.preview(image, kind, drawn, clicks),
                               session.display_scale(image.shape))

    def refresh(editor, kind, clicks):
        image, drawn = session.painted(editor)
        return shown(image, kind, drawn, clicks), HOW[kind] + "."

    @_guarded(3)
    def click(editor, kind, clicks, evt: gr.SelectData):
        if kind in session.PAINTED_KINDS:
            return gr.skip(), gr.skip(), (f"{kind}: use the brush on the reference above "
                                          "(clicks place points and box corners)")
        image, drawn = session.painted(editor)
        scale = session.display_scale(image.shape)
        clicks = [*clicks, (int(evt.index[0]) // scale, int(evt.index[1]) // scale)]
        listed = "; ".join(f"({x}, {y})" for x, y in clicks)
        return clicks, shown(image, kind, drawn, clicks), f"{kind} clicks: {listed}"

    @_guarded(2)
    def changed(editor, kind, clicks):
        if not editor or editor.get("background") is None:
            return None, HOW[kind] + " (upload a reference first)."
        return refresh(editor, kind, clicks)

    @_guarded(3)
    def undo(editor, kind, clicks):
        clicks = clicks[:-1]
        return (clicks, *refresh(editor, kind, clicks))

    @_guarded(6)
    def add(editor, kind, clicks, references):
        image, drawn = session.painted(editor)
        label = f"reference {len(references) + 1}"
        ref = session.annotate(kind, image, drawn, clicks, segmenter.size, label)
        if references and references[0].kind != kind:
            raise InputError(
                f"{label}: annotated as {kind}, the others as {references[0].kind}; k-shot "
                "references share one kind (clear the references to change it)")
        references = [*references, ref]
        gallery = [(session.reference_preview(r), f"{i}: {r.kind}")
                   for i, r in enumerate(references, 1)]
        return (references, gallery, [], shown(image, kind, drawn, []),
                session.describe(references),
                f"{len(references)} reference(s) added ({len(references)}-shot)")

    def clear_references():
        return [], [], "", "references cleared"

    @_guarded(4)
    def segment(references, files, method, gp_prompts):
        result = ready().segment(references, _files(files),
                                   workspace / uuid.uuid4().hex[:12], method, gp_prompts)
        gallery = []
        for o in result.outputs:
            name = Path(o["target"]).name
            gallery.append((o["overlay"], f"{name}: {100 * o['foreground']:.1f}% foreground"))
            known = toy_model.example_truth(o["target"]) if is_toy else None
            if known is not None:  # the toy example's own targets: what was to be found
                image, truth = known  # the target's pixels, already read to recognise it
                gallery.append((overlay(image, truth),
                                f"{name}: ground truth ({100 * truth.mean():.1f}%)"))
        downloads = [str(result.bundle), *(o["mask"] for o in result.outputs)]
        return (gallery, downloads, result.command,
                f"{len(result.outputs)} target(s) segmented with {len(references)} "
                f"reference(s) ({METHOD_LABELS[method]})")

    def load_example():
        image, mask, targets = toy_model.example(workspace / "toy_example")
        layer = np.zeros((*mask.shape, 4), np.uint8)
        layer[mask] = (*session.MARK, 255)
        editor = {"background": image, "layers": [layer], "composite": None}
        return (editor, "mask", [], [str(t) for t in targets],
                f"toy example: the reference's {toy_model.example_class()} is painted as its mask; "
                "next, press *Add reference*, then *Segment*")

    with gr.Blocks(title="VRP-SAM") as page:
        gr.Markdown("# VRP-SAM: segment with a visual reference\nAnnotate the object in one "
                    "or more reference images; every target is segmented for the same kind "
                    "of object.")
        gr.Markdown(description, elem_id="model")
        preparation = gr.Markdown(segmenter.status() if preparing else "",
                                  elem_id="preparation", visible=preparing)
        timer = gr.Timer(1.0, active=preparing)
        example = gr.Button("Load the toy example", elem_id="toy-example", visible=is_toy)
        references = gr.State([])
        clicks = gr.State([])
        with gr.Row():
            with gr.Column():
                editor = gr.ImageEditor(
                    label="1. Reference: upload it, then paint (mask, scribble)",
                    type="numpy", format="png", elem_id="reference", layers=False,
                    transforms=(), sources=("upload", "clipboard"),
                    brush=gr.Brush(colors=["#ff00ff"], default_color="#ff00ff",
                                   color_mode="fixed", default_size=6))
                # (shown, value): "points" on the page, as a person clicks one or more
                kind = gr.Radio([("points" if k == "point" else k, k) for k in CONDITIONS],
                                value="mask", label="Annotation", elem_id="kind")
                hint = gr.Markdown(HOW["mask"] + ".", elem_id="hint")
                preview = gr.Image(label="2. What the model gets: click here for points and box "
                                       "corners", type="numpy", interactive=False,
                                 elem_id="preview")
                with gr.Row():
                    undo_button = gr.Button("Undo click")
                    add_button = gr.Button("Add reference", variant="primary",
                                           elem_id="add-reference")
                    clear_button = gr.Button("Clear references")
                gallery = gr.Gallery(label="References (k-shot)", columns=4, height="auto",
                                     object_fit="contain",
                                     elem_id="references")
                listing = gr.Textbox(label="Annotations", lines=2, interactive=False,
                                     elem_id="annotations")
            with gr.Column():
                targets = gr.File(label="3. Targets", file_count="multiple",
                                  file_types=["image"], elem_id="targets")
                method = gr.Radio([(METHOD_LABELS[m], m) for m in methods], value=methods[0],
                                  label="Method", elem_id="method")
                gp_prompts = gr.Dropdown(list(GP_PROMPTS), value="box+point",
                                         label="GP-SAM prompts")
                run = gr.Button("Segment", variant="primary", elem_id="segment",
                                interactive=not preparing)
                status = gr.Markdown("", elem_id="status")
                results = gr.Gallery(label="Masks (the toy example's: each beside its ground "
                                           "truth)" if is_toy else "Masks", columns=4,
                                     elem_id="results")
                downloads = gr.File(label="Download (zip of everything, and each mask)",
                                    file_count="multiple", interactive=False,
                                    elem_id="downloads")
                command = gr.Textbox(label="The same with vrp-sam predict", lines=2,
                                     interactive=False, elem_id="command")

        timer.tick(poll, None, [preparation, run, timer])
        example.click(load_example, None, [editor, kind, clicks, targets, status])
        editor.change(changed, [editor, kind, clicks], [preview, hint])
        kind.change(lambda: [], None, clicks).then(changed, [editor, kind, clicks],
                                                    [preview, hint])
        preview.select(click, [editor, kind, clicks], [clicks, preview, hint])
        undo_button.click(undo, [editor, kind, clicks], [clicks, preview, hint])
        add_button.click(add, [editor, kind, clicks, references],
                         [references, gallery, clicks, preview, listing, status])
        clear_button.click(clear_references, None, [references, gallery, listing, status])
        run.click(segment, [references, targets, method, gp_prompts],
                  [results, downloads, command, status])
    page.workspace = workspace
    return page

