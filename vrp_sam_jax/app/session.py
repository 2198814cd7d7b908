"""What the app computes, without the page: a reference annotated in the browser -> its
prompt mask, targets -> masks with the references encoded once, and the download bundle,
which holds what `vrp-sam predict` needs to give the same masks from the command line."""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vrp_sam_jax import names
from vrp_sam_jax.errors import InputError
from vrp_sam_jax.evaluation.figures import draw_annotation
from vrp_sam_jax.inference import VRPSamPredictor, predict_files
from vrp_sam_jax.models import LoadedModel
from vrp_sam_jax.storage.files import write_atomic
from vrp_sam_jax.storage.image_io import write_mask
from vrp_sam_jax.transforms import annotations

PAINTED_KINDS = ("mask", "scribble")  # painted with the brush; box and points are clicked
MARK = (255, 0, 255)  # the annotation colour of the episode figures


@dataclasses.dataclass(frozen=True)
class Reference:
    """One annotated reference: the image, how it is annotated, the annotation as given
    (painted pixels (H, W) bool, or boxes / points in image pixels) and its prompt mask."""

    image: np.ndarray
    kind: str
    annotation: np.ndarray | list
    prompt: np.ndarray


def rgb(image: np.ndarray | None, what: str = "reference") -> np.ndarray:
    """An uploaded image as HxWx3 uint8 (grey expanded, alpha dropped as `read_image` does)."""
    if image is None or np.asarray(image).size == 0:
        raise InputError(f"no {what} image: upload one first")
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def painted(editor: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """(reference RGB, painted pixels bool (H, W)) from the image editor's value: a pixel is
    painted where any brush layer is not transparent."""
    if not editor or editor.get("background") is None:
        raise InputError("no reference image: upload one first")
    image = rgb(editor["background"])
    drawn = np.zeros(image.shape[:2], bool)
    for layer in editor.get("layers") or []:
        layer = np.asarray(layer)
        if layer.shape[:2] != drawn.shape:
            raise InputError(f"the painted layer is {layer.shape[1]}x{layer.shape[0]} but the "
                             f"reference is {drawn.shape[1]}x{drawn.shape[0]}")
        drawn |= layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[2] == 4 else layer > 0
    return image, drawn


def boxes(clicks: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """Clicked corners, two per box (either diagonal) -> boxes x0, y0, x1, y1."""
    if len(clicks) % 2:
        raise InputError("a box needs two clicks (opposite corners); one corner is pending")
    out = []
    for (xa, ya), (xb, yb) in zip(clicks[::2], clicks[1::2], strict=True):
        out.append((min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)))
    return out


def annotate(kind: str, image: np.ndarray, drawn: np.ndarray, clicks: Sequence[tuple[int, int]],
             size: int, label: str = "reference") -> Reference:
    """The reference annotated the `kind` way: painted pixels for mask and scribble, the
    clicks for point (each click a point) and box (corner pairs), -> its prompt mask on the
    model's size x size grid (errors name `label`)."""
    if kind in PAINTED_KINDS:
        annotation = drawn.copy()
    elif kind == "box":
        annotation = boxes(clicks)
    elif kind == "point":
        annotation = [tuple(c) for c in clicks]
    else:
        raise InputError(f"unknown annotation kind {kind!r}; choose from "
                         f"{', '.join(names.CONDITIONS)}")
    if not (annotation.any() if kind in PAINTED_KINDS else annotation):
        how = "paint on the reference" if kind in PAINTED_KINDS else "click on the reference"
        raise InputError(f"{label}: empty {kind} annotation ({how} first)")
    prompt = annotations.prompt_mask(kind, annotation, image.shape[:2], size, label)
    return Reference(image, kind, annotation, prompt)


def preview(image: np.ndarray, kind: str, drawn: np.ndarray | None,
            clicks: Sequence[tuple[int, int]]) -> np.ndarray:
    """The reference with its annotation drawn as the model will take it: the painted
    region's outline (mask), the strokes (scribble), the boxes or the points."""
    if kind in PAINTED_KINDS and drawn is not None and drawn.any():
        if kind == "mask":
            return draw_annotation(image, drawn)
        out = image.copy()
        out[drawn] = MARK
        return out
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    r = max(2, round(max(image.shape[:2]) / 100))
    if kind == "box":
        for x0, y0, x1, y1 in boxes(clicks[: len(clicks) // 2 * 2]):
            draw.rectangle((x0, y0, x1, y1), outline=MARK, width=r)
    if kind in ("box", "point"):
        for x, y in clicks[len(clicks) // 2 * 2:] if kind == "box" else clicks:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=MARK, outline=(0, 0, 0))
    return np.asarray(pil)


def reference_preview(ref: Reference) -> np.ndarray:
    """An added reference with its annotation drawn (the page's reference gallery)."""
    if ref.kind in PAINTED_KINDS:
        return preview(ref.image, ref.kind, ref.annotation, [])
    clicks = ([c for x0, y0, x1, y1 in ref.annotation for c in ((x0, y0), (x1, y1))]
              if ref.kind == "box" else list(ref.annotation))
    return preview(ref.image, ref.kind, None, clicks)


def display_scale(shape: tuple[int, ...], at_least: int = 512) -> int:
    """The whole factor a small reference is enlarged by on the page, so that it is drawn
    at least `at_least` pixels wide and clicks on it land on whole image pixels."""
    return max(1, -(-at_least // max(shape[:2])))


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """Each pixel as a scale x scale block (what the page shows; clicks divide by it)."""
    return image if scale == 1 else np.repeat(np.repeat(image, scale, 0), scale, 1)


def describe(references: Sequence[Reference]) -> str:
    """One line per reference: its size and annotation, as `vrp-sam predict` would take it."""
    lines = []
    for i, ref in enumerate(references, 1):
        h, w = ref.image.shape[:2]
        if ref.kind in PAINTED_KINDS:
            what = f"{int(ref.annotation.sum())} painted pixels"
        else:
            what = _option_value(ref.annotation)
        lines.append(f"reference {i}: {w}x{h}, {ref.kind}: {what}")
    return "\n".join(lines)


def _option_value(annotation: list) -> str:
    return ";".join(",".join(str(v) for v in item) for item in annotation)


def _zip(folder: Path, path: Path) -> None:
    """Every file under `folder`, by its relative path, into the zip `path`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            z.write(file, file.relative_to(folder).as_posix())


def _fingerprint(references: Sequence[Reference], method: str, gp: tuple) -> str:
    h = hashlib.sha256(repr((method, gp)).encode())
    for ref in references:
        for array in (ref.image, ref.prompt):
            h.update(repr(array.shape).encode())
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Result:
    outputs: list[dict]  # per target: target, mask, overlay, foreground
    bundle: Path  # the zip
    command: str  # the `vrp-sam predict` command that gives the same masks


class Segmenter:
    """The model, and the references' encodings kept per annotation set (encoded once, reused
    by every later batch of targets)."""

    def __init__(self, model: LoadedModel, model_args: Sequence[str], batch_size: int = 8,
                 keep: int = 8):
        """`model_args`: the `vrp-sam predict` options that load the same model (for
        predict.sh); `keep`: how many annotation sets keep their encoding."""
        self.model, self.model_args = model, list(model_args)
        self.batch_size, self.keep = batch_size, keep
        self._encoded: dict[str, object] = {}

    @property
    def size(self) -> int:
        return self.model.config.image_size

    def predictor(self, references: Sequence[Reference], method: str = "vrp",
                  gp_prompts: str = "box+point", gp_threshold: float = 0.5
                  ) -> VRPSamPredictor:
        """A predictor holding the references' encoding (computed on first use)."""
        if not references:
            raise InputError("add at least one annotated reference first")
        kinds = {ref.kind for ref in references}
        if len(kinds) > 1:
            raise InputError("the references are annotated in different ways ("
                             + ", ".join(sorted(kinds)) + "); k-shot references share one kind")
        predictor = VRPSamPredictor(self.model, method, gp_prompts, gp_threshold)
        key = _fingerprint(references, method, predictor.gp)
        if key in self._encoded:
            predictor.reference = self._encoded[key]
        else:
            predictor.set_references([r.image for r in references],
                                     [r.prompt for r in references])
            while len(self._encoded) >= self.keep:
                self._encoded.pop(next(iter(self._encoded)))
            self._encoded[key] = predictor.reference
        return predictor

    def segment(self, references: Sequence[Reference], targets: Sequence[str | Path],
                output_dir: str | Path, method: str = "vrp", gp_prompts: str = "box+point",
                gp_threshold: float = 0.5) -> Result:
        """Masks and overlays of `targets` (image files) under `output_dir`, with the
        references and `predict.sh` beside them, and all of it zipped."""
        if not targets:
            raise InputError("add one or more target images first")
        predictor = self.predictor(references, method, gp_prompts, gp_threshold)
        out = Path(output_dir)
        outputs = predict_files(predictor, targets, out, self.batch_size, progress=False)
        for item in outputs:
            item["overlay"] = item["mask"][: -len(".png")] + "_overlay.png"
        command = self._write_references(references, targets, out, method, predictor.gp)
        bundle = out.with_suffix(".zip")
        write_atomic(bundle, lambda path: _zip(out, path))
        return Result(outputs, bundle, command)

    def _write_references(self, references: Sequence[Reference], targets: Sequence,
                          out: Path, method: str, gp: tuple) -> str:
        """references/reference_K.png (and _KIND.png for painted ones), and predict.sh."""
        folder = out / "references"
        folder.mkdir(exist_ok=True)
        args = ["vrp-sam", "predict", *self.model_args]
        if method != "vrp":
            args += ["--method", method, "--gp-prompts", gp[0], "--gp-threshold", str(gp[1])]
        for i, ref in enumerate(references, 1):
            image = folder / f"reference_{i}.png"
            Image.fromarray(ref.image).save(image)
            args += ["--reference", f"references/{image.name}"]
            if ref.kind in PAINTED_KINDS:
                drawn = folder / f"reference_{i}_{ref.kind}.png"
                write_mask(drawn, ref.annotation)
                args += [names.REFERENCE_OPTIONS[ref.kind], f"references/{drawn.name}"]
            else:
                args += [names.REFERENCE_OPTIONS[ref.kind], _option_value(ref.annotation)]
        args += [f"targets/{Path(t).name}" for t in targets]
        args += ["--output-dir", "masks", "--overwrite"]  # the folder is the script's own
        command = shlex.join(args)
        (out / "predict.sh").write_text(
            "# The same masks from the command line: run it in this folder, with the target "
            "images in targets/.\n" + command + "\n")
        return command
