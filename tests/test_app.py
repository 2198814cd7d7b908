"""`vrp-sam app`: the session's work without a browser (annotations, the encoding kept per
annotation set, the bundle equal to `vrp-sam predict`), then the page itself in Debian's
Chromium driven by Playwright: annotate toy references, segment targets, download the zip,
and check its masks equal `vrp-sam predict`'s. Screenshots go to $VRP_SAM_TEST_ARTIFACTS
(CI keeps them) or the test's temporary folder."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrp_sam_jax import model_io
from vrp_sam_jax.app import session
from vrp_sam_jax.app import toy_model as toy
from vrp_sam_jax.cli import main
from vrp_sam_jax.data import toy_benchmark as toy_data
from vrp_sam_jax.errors import InputError
from vrp_sam_jax.storage.image_io import read_image, read_mask

CHROMIUM = "/usr/bin/chromium"
# .ci/run installs the browser and sets this: there the browser test may not skip
REQUIRED = os.environ.get("VRP_SAM_BROWSER_TEST") == "required"


def _toy_files(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        paths.append(folder / f"{name.replace('/', '_')}.png")
        Image.fromarray(toy_data.render(name)[0]).save(paths[-1])
    return paths


def _predict_like(bundle_dir: Path, targets: list[Path], out: Path) -> list[str]:
    """The bundle's predict.sh as argv, its targets/NAME pointing at `targets`."""
    command = (bundle_dir / "predict.sh").read_text().strip().splitlines()[-1]
    args = shlex.split(command)
    assert args[:2] == ["vrp-sam", "predict"]
    by_name = {f"targets/{t.name}": str(t) for t in targets}
    args = [by_name.get(a, a) for a in args[2:]]
    args = [str(bundle_dir / a) if a.startswith("references/") else a for a in args]
    args[args.index("--output-dir") + 1] = str(out)
    return ["predict", *args]


def _same_masks_as_predict(bundle_dir: Path, targets: list[Path], tmp: Path, capsys) -> None:
    out = tmp / "cli_masks"
    assert main(_predict_like(bundle_dir, targets, out)) == 0
    capsys.readouterr()
    for t in targets:
        app_mask = read_mask(bundle_dir / f"{t.stem}.png")
        assert app_mask.shape == read_image(t).shape[:2]
        np.testing.assert_array_equal(app_mask, read_mask(out / f"{t.stem}.png"), t.name)


def _predict_sh_reproduces_the_masks(bundle: Path, targets: list[Path], folder: Path) -> None:
    """The zip's predict.sh, run as its comment says: in the unzipped folder, the targets in
    targets/, `vrp-sam` on the PATH (here a shim for this interpreter)."""
    zipfile.ZipFile(bundle).extractall(folder)
    (folder / "targets").mkdir()
    for t in targets:
        shutil.copy(t, folder / "targets" / t.name)
    shims = folder.parent / "shims"
    shims.mkdir(exist_ok=True)
    (shims / "vrp-sam").write_text(f'#!/bin/sh\nexec {sys.executable} -m vrp_sam_jax.cli "$@"\n')
    (shims / "vrp-sam").chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(["sh", "predict.sh"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for t in targets:
        np.testing.assert_array_equal(read_mask(folder / "masks" / f"{t.stem}.png"),
                                      read_mask(folder / f"{t.stem}.png"), t.name)


# --- the session, no browser -----------------------------------------------------------------
def test_annotations_from_the_page():
    image = np.zeros((40, 60, 3), np.uint8)
    layer = np.zeros((40, 60, 4), np.uint8)
    layer[10:20, 5:25, 3] = 255
    got, drawn = session.painted({"background": np.dstack([image, image[..., :1] + 255]),
                                  "layers": [layer], "composite": None})
    assert got.shape == (40, 60, 3) and drawn.sum() == 200
    assert session.boxes([(30, 20), (10, 5)]) == [(10, 5, 30, 20)]
    with pytest.raises(InputError, match="two clicks"):
        session.boxes([(1, 2)])
    ref = session.annotate("point", image, drawn, [(3, 4), (59, 39)], 16)
    assert ref.prompt.sum() == 2 and ref.annotation == [(3, 4), (59, 39)]
    assert session.annotate("mask", image, drawn, [], 16).prompt.sum() > 0
    for kind in ("mask", "scribble", "box", "point"):
        with pytest.raises(InputError, match=f"empty {kind} annotation"):
            session.annotate(kind, image, np.zeros_like(drawn), [], 16)
    with pytest.raises(InputError, match="outside"):
        session.annotate("point", image, drawn, [(60, 3)], 16)
    with pytest.raises(InputError, match="no reference image"):
        session.painted({"background": None, "layers": []})
    with pytest.raises(InputError, match="painted layer is 10x10"):
        session.painted({"background": image, "layers": [np.zeros((10, 10, 4), np.uint8)]})
    # the preview draws the annotation as the model takes it
    box = session.preview(image, "box", None, [(10, 5), (30, 20)])
    assert (box == session.MARK).all(-1).any() and not (box[25:, 40:] != 0).any()
    assert session.display_scale((128, 128)) == 4 and session.display_scale((900, 600)) == 1
    np.testing.assert_array_equal(session.enlarge(image[:2, :2], 3).shape, (6, 6, 3))


def test_segment_encodes_once_and_bundles_the_predict_command(toy_run, tmp_path, capsys,
                                                              monkeypatch):
    model = model_io.load(toy_run)
    segmenter = session.Segmenter(model, ["--vrp-checkpoint", str(toy_run)], batch_size=2)
    ref_image, ref_mask, _ = toy.example(tmp_path / "example")
    other = toy_data.render(toy_data.classwise("val")[toy.EXAMPLE_CATEGORY][5])
    refs = [session.annotate("mask", ref_image, ref_mask, [], segmenter.size),
            session.annotate("mask", other[0], other[1] == toy.EXAMPLE_CATEGORY + 1, [],
                             segmenter.size)]
    targets = _toy_files(tmp_path / "targets", ["val/000001", "val/000002", "val/000003"])
    calls = []
    original = session.VRPSamPredictor.set_references
    monkeypatch.setattr(session.VRPSamPredictor, "set_references",
                        lambda self, *a: calls.append(1) or original(self, *a))
    first = segmenter.segment(refs, targets, tmp_path / "run1")
    second = segmenter.segment(refs, targets[:1], tmp_path / "run2")
    assert len(calls) == 1  # the same annotations: encoded once
    assert read_mask(second.outputs[0]["mask"]).tolist() == read_mask(
        first.outputs[0]["mask"]).tolist()
    names = zipfile.ZipFile(first.bundle).namelist()
    assert {"predict.sh", "references/reference_1.png", "references/reference_2_mask.png",
            "val_000001.png", "val_000001_overlay.png"} <= set(names)
    _same_masks_as_predict(tmp_path / "run1", targets, tmp_path, capsys)
    _predict_sh_reproduces_the_masks(first.bundle, targets, tmp_path / "unzipped")
    # GP-SAM: another encoding, also equal to the command line
    before = len(calls)  # the command line's own predictor encoded once more
    gp = segmenter.segment(refs[:1], targets, tmp_path / "gp", method="gp-sam",
                           gp_prompts="box")
    assert len(calls) == before + 1 and "--method gp-sam" in gp.command
    _same_masks_as_predict(tmp_path / "gp", targets, tmp_path, capsys)
    with pytest.raises(InputError, match="share one kind"):
        segmenter.predictor([refs[0], session.annotate("point", ref_image, ref_mask,
                                                       [(5, 5)], segmenter.size)])
    with pytest.raises(InputError, match="at least one annotated reference"):
        segmenter.segment([], targets, tmp_path / "none")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="bad.png: not a readable image"):
        segmenter.segment(refs, [bad], tmp_path / "bad")


def test_no_checkpoint_serves_at_once_and_prepares_the_toy_model(toy_run, tmp_path,
                                                                  monkeypatch):
    """Without a model the page is built at once over a `toy.Preparation`, which trains the
    toy run in the background (here from scratch: its checkpoints removed), says how far it
    is, refuses to segment until it is ready, then hands over the model."""
    from vrp_sam_jax.app import page
    from vrp_sam_jax.cli import app_commands, entry

    run = tmp_path / "toy"
    shutil.copytree(toy_run, run)
    for done in ("checkpoints", "best"):
        shutil.rmtree(run / done)
    monkeypatch.chdir(tmp_path)  # a relative path: predict.sh runs elsewhere, so made absolute
    model, given, line = app_commands._model(entry.parse(["app", "--toy-workdir", "toy"]))
    assert model is None and given == ["--vrp-checkpoint", str(run)]
    assert line.startswith("**This is a toy.**") and str(run) in line

    preparation = toy.Preparation(toy.toy_config("toy"), "toy",
                                  lambda m: session.Segmenter(m, given), progress=False)
    assert "setting up" in preparation.status() and not preparation.done()
    with pytest.raises(InputError, match="Preparing the toy model"):
        preparation.result()
    built = page.build(preparation, line, tmp_path / "workspace")  # served before it is ready
    assert built.workspace == tmp_path / "workspace"
    preparation.start()
    seen = set()
    deadline = time.time() + 600
    while not preparation.done():
        seen |= set(re.findall(r"training step (\d+) of 4", preparation.status()))
        assert time.time() < deadline
        time.sleep(0.01)
    assert preparation.ready() and preparation.status().startswith("The toy model is ready")
    assert seen and seen <= {"1", "2", "3", "4"}, seen  # progress was shown step by step
    segmenter = preparation.result()
    assert isinstance(segmenter, session.Segmenter) and toy.is_toy(segmenter.model)
    assert (run / "checkpoints" / "4").is_dir()

    broken = toy.toy_config("toy")
    broken.data.fold = 9
    failed = toy.Preparation(broken, tmp_path / "other", lambda m: m, progress=False).start()
    failed.wait(60)
    assert failed.done() and not failed.ready()
    assert failed.status().startswith("**Error:** the toy model could not be prepared: ")
    assert "fold" in failed.status()
    real = model_io.load(toy_run)
    assert not toy.is_toy(dataclasses.replace(real, config=dataclasses.replace(
        real.config, sam_type="vit_b")))


def test_app_without_gradio_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    monkeypatch.delitem(sys.modules, "vrp_sam_jax.app.page", raising=False)
    import vrp_sam_jax.app

    # an earlier import leaves the module as the package's attribute, which `from ... import`
    # finds first
    monkeypatch.delattr(vrp_sam_jax.app, "page", raising=False)
    assert main(["app", "--vrp-checkpoint", "nowhere"]) == 2
    assert 'pip install -e ".[app]"' in capsys.readouterr().err


# --- the page in a browser ------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    missing = [what for what, ok in (
        ("Debian's chromium", Path(CHROMIUM).exists()),
        ("gradio", _importable("gradio")), ("playwright", _importable("playwright")))
        if not ok]
    if missing:
        if REQUIRED:
            pytest.fail(f"the browser test needs {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield browser
        browser.close()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _serving(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def served(toy_run, tmp_path_factory):
    """`vrp-sam app` on 127.0.0.1 without a model, as a user starts it first: the page is
    served at once and trains the toy model of --toy-workdir in the background (here the toy
    run's config with no step trained). Yields (url, workspace, seconds until the page was
    served, the page's first HTML)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workspace = tmp_path_factory.mktemp("app_workspace")
    run = tmp_path_factory.mktemp("app_toy") / "run"
    shutil.copytree(toy_run, run)
    for trained in ("checkpoints", "best"):
        shutil.rmtree(run / trained)
    log = workspace.parent / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "JAX_PLATFORMS": "cpu"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vrp_sam_jax.cli", "app", "--toy-workdir", str(run),
             "--port", str(port), "--workspace", str(workspace), "--quiet",
             "--max-upload-mb", "2"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    deadline = started + 300
    while not _serving(url):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    waited = time.monotonic() - started
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        first = response.read().decode()
    yield url, workspace, waited, first
    proc.terminate()
    proc.wait(30)


def test_the_page_is_served_before_the_toy_model_is_trained(served):
    """A fresh start: the page within 60 s, saying the toy model is being prepared (its
    training then finishes in the background: the `page` fixture waits for it, and the page
    tests below segment with it)."""
    _, _, waited, first = served
    assert waited < 60, waited
    assert "Preparing the toy model" in first and "setting up" in first


def test_the_page_refuses_an_upload_over_its_limit(served):
    """An upload over --max-upload-mb (2 here) is refused with 413 before Gradio stores it;
    one under it is stored."""
    import urllib.error
    import urllib.request

    def upload(size: int) -> int:
        boundary = "vrpsamtest"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + (
            b"\0" * size) + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            f"{served[0]}/gradio_api/upload", data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code

    assert upload(3 * 2**20) == 413
    assert upload(2**20) == 200


@pytest.fixture
def page(browser, served):
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.set_default_timeout(120_000)
    page.goto(served[0])
    page.locator("#toy-example").wait_for()
    preparation = page.locator("#preparation")
    deadline = time.monotonic() + 300  # the page polls the preparation each second
    while "The toy model is ready" not in preparation.inner_text():
        assert time.monotonic() < deadline, preparation.inner_text()
        time.sleep(0.25)
    assert page.locator("#segment").is_enabled()
    yield page
    page.close()


def _shot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("VRP_SAM_TEST_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"app_{name}.png"), full_page=True)


def _status(page, pattern: str) -> str:
    """Wait for the status line to match `pattern`; its text."""
    status = page.locator("#status")
    deadline = time.monotonic() + 180
    while not re.search(pattern, status.inner_text()):
        assert time.monotonic() < deadline, f"status: {status.inner_text()!r}"
        time.sleep(0.25)
    return status.inner_text()


def _wait_text(locator, pattern: str) -> str:
    deadline = time.monotonic() + 60
    while not re.search(pattern, text := (locator.input_value() if locator.evaluate(
            "e => 'value' in e") else locator.inner_text())):
        assert time.monotonic() < deadline, f"{text!r} !~ {pattern!r}"
        time.sleep(0.25)
    return text


def _click_image(page, selector: str, fractions: list[tuple[float, float]],
                 expect: str) -> None:
    image = page.locator(selector)
    for i, (fx, fy) in enumerate(fractions, 1):
        image.wait_for()
        page.wait_for_function(f"document.querySelector('{selector}').complete")
        time.sleep(1.5)  # the events that drew this preview have all returned
        box = image.bounding_box()
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        _wait_text(page.locator("#hint"), rf"{expect} clicks:( \(\d+, \d+\);?){{{i}}}$")


def _set_targets(page, paths: list[Path]) -> None:
    """Replace the page's targets with `paths` (uploaded as a person drops them)."""
    listing = page.locator("#targets")
    clear = page.locator("#targets button[aria-label=Clear]")
    if clear.count():
        clear.first.click()
        _until(lambda: "\u21e3" not in listing.inner_text(), "the targets cleared")
    page.locator("#targets input[type=file]").set_input_files([str(p) for p in paths])
    _until(lambda: all(p.stem in listing.inner_text() for p in paths), "the targets listed")
    time.sleep(1)  # the upload reaches the server


def _until(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def _download(page, tmp_path: Path, name: str) -> Path:
    """The zip as the page's download link serves it, unpacked."""
    link = page.locator("#downloads a[href*='.zip']").first
    link.wait_for()
    response = page.request.get(link.get_attribute("href"))
    assert response.ok
    folder = tmp_path / name
    zipfile.ZipFile(io.BytesIO(response.body())).extractall(folder)
    return folder


def test_page_the_toy_example_as_it_comes(page, tmp_path):
    """The first thing a new user does: *Load the toy example*, *Add reference*, *Segment*:
    each of the example's targets is shown with its ground truth beside the prediction, and
    the whole reference in the k-shot gallery."""
    page.locator("#toy-example").click()
    _status(page, "next, press \\*?Add reference")
    _until(lambda: page.locator("#targets").inner_text().count("toy_val_") == toy.EXAMPLE_TARGETS,
           "the example's targets listed")
    time.sleep(1)  # the targets reach the server
    page.locator("#add-reference").click()
    _status(page, r"1 reference\(s\) added")
    page.locator("#segment").click()
    _status(page, rf"{toy.EXAMPLE_TARGETS} target\(s\) segmented")
    results = page.locator("#results")
    _until(lambda: results.inner_text().count(": ground truth (") == toy.EXAMPLE_TARGETS,
           "each target's ground truth shown")
    assert results.inner_text().count("% foreground") == toy.EXAMPLE_TARGETS
    # the reference is drawn whole: its thumbnail not cut off by the gallery's frame
    thumbnail = page.locator("#references img").first.bounding_box()
    frame = page.locator("#references").bounding_box()
    assert thumbnail["y"] + thumbnail["height"] <= frame["y"] + frame["height"] + 1, (
        thumbnail, frame)
    _shot(page, "toy_example", tmp_path)


def test_example_truth_is_recognised_by_name_and_pixels(tmp_path):
    _, _, targets = toy.example(tmp_path / "example")
    moved = tmp_path / "elsewhere" / targets[0].name  # as the browser's upload copies it
    moved.parent.mkdir()
    shutil.copy(targets[0], moved)
    image, truth = toy.example_truth(moved)
    name = targets[0].stem.removeprefix("toy_").replace("_", "/")
    assert truth.any()
    np.testing.assert_array_equal(truth, toy_data.render(name)[1] == toy.EXAMPLE_CATEGORY + 1)
    np.testing.assert_array_equal(image, read_image(moved))
    other = np.asarray(Image.open(moved)).copy()
    other[0, 0] ^= 255
    Image.fromarray(other).save(moved)
    assert toy.example_truth(moved) is None  # another picture under the name
    assert toy.example_truth(tmp_path / "photo.png") is None
    (tmp_path / "toy_val_000001.png").write_text("not an image")
    assert toy.example_truth(tmp_path / "toy_val_000001.png") is None


def test_page_two_point_references_equal_predict(page, served, tmp_path, capsys):
    """2-shot with clicked points: the toy example's reference and an uploaded second one."""
    names = toy_data.classwise("val")[toy.EXAMPLE_CATEGORY]
    second, *targets = _toy_files(tmp_path / "files", [names[6], "val/000004", "val/000009"])
    page.locator("#toy-example").click()
    _status(page, "toy example")
    page.locator("#kind").get_by_text("points").click()
    _wait_text(page.locator("#hint"), "click on the object")
    _click_image(page, "#preview img", [(0.3, 0.4), (0.62, 0.55)], "point")
    page.locator("#add-reference").click()
    _status(page, r"1 reference\(s\) added")
    page.locator("#reference input[type=file]").set_input_files(str(second))
    _wait_text(page.locator("#hint"), "click on the object")
    time.sleep(1)  # the preview shows the new reference
    _click_image(page, "#preview img", [(0.5, 0.5)], "point")
    page.locator("#add-reference").click()
    _status(page, r"2 reference\(s\) added \(2-shot\)")
    _set_targets(page, targets)
    page.locator("#segment").click()
    _status(page, r"2 target\(s\) segmented with 2 reference")
    page.locator("#results img").nth(1).wait_for()
    _shot(page, "points_2shot", tmp_path)
    bundle = _download(page, tmp_path, "points")
    listing = page.locator("#annotations textarea").input_value()
    assert listing.count("point:") == 2
    # the browser passed the pixels through: the references are the files' own
    np.testing.assert_array_equal(read_image(bundle / "references/reference_1.png"),
                                  toy_data.render(names[0])[0])
    np.testing.assert_array_equal(read_image(bundle / "references/reference_2.png"),
                                  read_image(second))
    _same_masks_as_predict(bundle, targets, tmp_path, capsys)


def test_page_scribble_with_gp_sam_and_errors(page, served, tmp_path, capsys):
    targets = _toy_files(tmp_path / "files", ["val/000005", "val/000007"])
    page.locator("#segment").click()
    _status(page, "Error: add one or more target images first")
    bad = tmp_path / "files" / "broken.png"
    bad.write_text("not an image")
    _set_targets(page, [bad])
    page.locator("#segment").click()
    _status(page, "Error: add at least one annotated reference first")
    page.locator("#reference input[type=file]").set_input_files(
        str(_toy_files(tmp_path / "ref", ["val/000011"])[0]))
    page.locator("#kind").get_by_text("scribble").click()
    _wait_text(page.locator("#hint"), "draw a few strokes")
    page.locator("#add-reference").click()
    _status(page, "Error: reference 1: empty scribble annotation")
    page.locator("#reference button[aria-label=Brush]").click()
    canvas = page.locator("#reference canvas").first.bounding_box()
    cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
    page.mouse.move(cx - 70, cy - 50)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(cx - 70 + 7 * i, cy - 50 + 4 * i)
    page.mouse.up()
    time.sleep(1.5)  # the stroke reaches the server
    page.locator("#add-reference").click()
    _status(page, r"1 reference\(s\) added")
    painted = int(re.search(r"scribble: (\d+) painted", page.locator(
        "#annotations textarea").input_value()).group(1))
    assert painted > 50
    page.locator("#method").get_by_text("GP-SAM").click()
    page.locator("#segment").click()
    _status(page, "Error: .*broken.png: not a readable image")
    _set_targets(page, targets)
    page.locator("#segment").click()
    _status(page, r"2 target\(s\) segmented .*GP-SAM")
    _shot(page, "scribble_gp_sam", tmp_path)
    bundle = _download(page, tmp_path, "scribble")
    assert read_mask(bundle / "references/reference_1_scribble.png").sum() == painted
    assert "--method gp-sam" in (bundle / "predict.sh").read_text()
    _same_masks_as_predict(bundle, targets, tmp_path, capsys)
    shutil.rmtree(bundle)
