"""`sam3m4 visual-eval`: inputs, checklist schema, report round trip, the page, and the page in headless Chromium.

The Chromium test drives Debian's ``chromium`` through the ``playwright`` package (``executable_path``; no
browser download): the ``chromium`` fixture (tests/conftest.py) installs it with apt-get when it is missing and
it can (root, or passwordless sudo); otherwise the test is skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import pytest
import torch

from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.report import render_report
from sam3m4.results import ResultsStore
from sam3m4.visual import checklist
from sam3m4.visual import cli, qa

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "fixtures" / "synth" / "saco_image" / "images"
PROMPTS = ["red circle", "star", "blue square"]

pytestmark = [pytest.mark.visual, pytest.mark.usefixtures("one_thread")]


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_teacher_kwargs):
    """(random tiny SAM 3 teacher dir, random tiny student checkpoint): noise, but real code paths."""
    from sam3m4.distill.cache import save_random_teacher
    from sam3m4.checkpoint import save_checkpoint
    from sam3m4.models import build_student

    out = tmp_path_factory.mktemp("models")
    teacher = save_random_teacher(out / "tiny-random", **tiny_teacher_kwargs)
    torch.manual_seed(0)
    student = save_checkpoint(out / "student", phase=2, epoch=0, step=1,
                              state={"model": build_student("tiny").state_dict(), "preset": "tiny"})["path"]
    return teacher, student


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    manifest = folder / "manifest.txt"
    manifest.write_text(f"# test manifest\nroot: {IMAGES}\nval/000005.jpg\n\ntrain/000000.jpg  # two shapes\n"
                        f"{IMAGES / 'train' / '000001.jpg'}\n")
    prompts = folder / "prompts.txt"
    prompts.write_text("# test prompts\n" + "\n".join(PROMPTS) + "\n")
    return manifest, prompts


def _visual_eval(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def page(tmp_path_factory, models):
    """One visual-eval run over 3 fixture images x 3 prompts (with --auto-checklist): its run folder."""
    teacher, student = models
    tmp = tmp_path_factory.mktemp("visual")
    manifest, prompts = _write_inputs(tmp)
    assert _visual_eval("--manifest", manifest, "--prompts", prompts, "--teacher", teacher, "--student", student,
                        "--run", "t", "--out", tmp / "out", "--auto-checklist", "--threshold", "0.3") == 0
    return tmp / "out" / "t"


# --- inputs -----------------------------------------------------------------------------------------
def test_manifest_and_prompt_errors_name_file_and_line(tmp_path):
    with pytest.raises(Sam3m4Error, match=r"nope\.txt: no such manifest file"):
        qa.read_manifest(tmp_path / "nope.txt")
    bad = tmp_path / "m.txt"
    bad.write_text(f"# header\nroot: {IMAGES}\nval/000005.jpg\nval/missing.jpg\n")
    with pytest.raises(DataFormatError, match=r"m\.txt:4: .*missing\.jpg: no such image file"):
        qa.read_manifest(bad)
    bad.write_text("# only comments\n\n")
    with pytest.raises(DataFormatError, match=r"m\.txt: no image listed"):
        qa.read_manifest(bad)
    good = tmp_path / "g.txt"
    good.write_text(f"root: {IMAGES}\nval/000005.jpg # comment\n")
    assert qa.read_manifest(good) == [(2, IMAGES / "val" / "000005.jpg")]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match=r"g\.txt:7: .*broken\.jpg: cannot decode image") as err:
        qa.read_image(good, 7, broken)
    assert "\n" not in str(err.value)
    prompts = tmp_path / "p.txt"
    prompts.write_text("# p\nred  circle\nstar\nred circle # again\n")
    with pytest.raises(DataFormatError, match=r"p\.txt:4: duplicate prompt 'red circle' \(also line 2\)"):
        qa.read_prompts(prompts)
    prompts.write_text("star\n  blue   square  \n")
    assert qa.read_prompts(prompts) == ["star", "blue square"]
    with pytest.raises(Sam3m4Error, match=r"none\.txt: no such prompts file"):
        qa.read_prompts(tmp_path / "none.txt")


# --- checklist schema -------------------------------------------------------------------------------
def _checklist(**items) -> dict:
    base = {k: {"verdict": "Pass", "memo": f"memo {k}", "source": "human"} for k in checklist.ITEMS}
    base.update(items)
    return checklist.build_checklist(run="r", reviewer="Kim", saved_at="2026-01-01T00:00:00Z", index_html="o/r/index.html",
                             manifest="m.txt", prompts="p.txt", items=base)


@pytest.mark.parametrize("mutate, field, message", [
    (lambda d: d["items"]["small_objects"].update(verdict="maybe"), "items.small_objects.verdict",
     'expected "Pass", "Fail" or "To review", got "maybe"'),
    (lambda d: d["items"].pop("background_leakage"), "items.background_leakage", "missing key"),
    (lambda d: d["items"]["teacher_difference"].update(source="robot"), "items.teacher_difference.source",
     'expected "auto" or "human"'),
    (lambda d: d["items"]["small_objects"].update(memo=3), "items.small_objects.memo", "expected a string"),
    (lambda d: d["items"].update(extra={}), "items.extra", "unknown item"),
    (lambda d: d.update(format="v0"), "format", "expected \"sam3m4-visual-checklist-v1\""),
    (lambda d: d.update(reviewer=" "), "reviewer", "empty"),
    (lambda d: d.pop("run"), "run", "missing key"),
], ids=["verdict", "missing-item", "source", "memo-type", "unknown-item", "format", "reviewer", "run"])
def test_load_checklist_errors_are_one_line_naming_file_and_field(tmp_path, mutate, field, message):
    data = _checklist()
    mutate(data)
    path = tmp_path / "checklist.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError) as err:
        checklist.load_checklist(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: {field}: ") and message in text, text


def test_load_checklist_rejects_broken_json(tmp_path):
    path = tmp_path / "checklist.json"
    path.write_text('{"format": ')
    with pytest.raises(DataFormatError, match=r"checklist\.json:1:\d+: invalid JSON"):
        checklist.load_checklist(path)


def test_checklist_round_trips_into_report_section_3(tmp_path):
    data = _checklist(small_objects={"verdict": "Fail", "memo": "misses the tiny star\nin 2 | 12 images",
                                     "source": "human"})
    path = checklist.save_checklist(tmp_path / "out" / "r" / "checklist.json", data)
    assert checklist.load_checklist(path) == data
    assert checklist.import_for_report("r", root=tmp_path / "reports", out_root=tmp_path / "out") == path
    store = ResultsStore("r", root=tmp_path / "reports")
    n = len(store.records())
    checklist.import_for_report("r", root=tmp_path / "reports", out_root=tmp_path / "out")  # same sha256: not again
    assert len(store.records()) == n
    rec = store.latest("visual", "small_objects", "verdict")
    assert rec.sha256 and rec.artifact == str(path) and "reviewed by Kim" in rec.provenance
    text = render_report("r", root=tmp_path / "reports").read_text()
    section = text.split("## 3)")[1].split("## 4)")[0]
    assert re.search(r"\| 작은 물체 분할 안정성 \| Fail\[\^\d+\] \| misses the tiny star in 2 \\\| 12 images \|", section)
    assert re.search(r"\| 배경 누수\(오탐\) \| Pass\[\^\d+\] \| memo background_leakage \|", section)
    assert "- 이미지 manifest: `m.txt`" in section and "- 생성 결과: `o/r/index.html`" in section
    assert checklist.import_for_report("none", root=tmp_path / "reports", out_root=tmp_path / "out") is None


def test_suggestions_state_number_and_threshold():
    pairs = [checklist.PairResult("a.jpg", "star", 2, 2, 0.9, 0.8, 0.7, small_ious=[0.6]),
             checklist.PairResult("a.jpg", "blue triangle", 0, 1, 0.1, 0.6, None),
             checklist.PairResult("b.jpg", "star", 3, 1, 0.9, 0.9, 0.4)]
    items = checklist.suggest(pairs)
    assert list(items) == list(checklist.ITEMS) and all(v["source"] == "auto" for v in items.values())
    verdict = {k: v["verdict"] for k, v in items.items()}
    memo = {k: v["memo"] for k, v in items.items()}
    assert verdict["background_leakage"] == "Fail" and "100% of 1 pair(s)" in memo["background_leakage"]
    assert verdict["multi_object_separation"] == "Fail" and "50% of 2 pair(s)" in memo["multi_object_separation"]
    assert verdict["teacher_difference"] == "Pass" and "0.550 over 2 pair(s)" in memo["teacher_difference"]
    assert verdict["prompt_responsiveness"] == "Fail" and "0.200 over 1 image(s)" in memo["prompt_responsiveness"]
    assert "weak evidence" in memo["small_objects"] and f">= {checklist.SMALL_IOU_PASS}" in memo["small_objects"]


def test_an_item_with_nothing_to_judge_is_left_for_the_reviewer_not_failed():
    """No small teacher instance, no multi-instance pair, no teacher-empty pair: those items say why and are
    left for the reviewer; the items that have evidence are still judged."""
    pairs = [checklist.PairResult("a.jpg", "star", 1, 1, 0.9, 0.8, 0.7),
             checklist.PairResult("a.jpg", "red circle", 1, 1, 0.8, 0.3, 0.9)]
    items = checklist.suggest(pairs)
    verdict = {k: v["verdict"] for k, v in items.items()}
    for key, why in (("small_objects", "no instance < 1%"), ("multi_object_separation", "no pair where the teacher"),
                     ("background_leakage", "no negative pair")):
        assert verdict[key] == checklist.TO_REVIEW and why in items[key]["memo"], (key, items[key])
        assert items[key]["memo"].endswith("left for the reviewer")
    assert verdict["teacher_difference"] == "Pass" and verdict["prompt_responsiveness"] == "Pass"
    assert checklist.validate(_checklist(**items), "x") is not None  # a saved page may keep "To review"


# --- the page ---------------------------------------------------------------------------------------
def test_page_files_are_local_and_relative(page):
    html = (page / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and not re.search(r"https?://", html.split('<script type="application/json"')[0])
    for ref in refs:
        if ref.startswith("data:"):
            continue
        assert not ref.startswith(("/", "file:")) and ".." not in ref and (page / ref).is_file(), ref
    imgs = re.findall(r"<img [^>]*>", html)
    assert len(imgs) == 2 * 3 * len(PROMPTS) and all('loading="lazy"' in i and "thumb/" in i for i in imgs)
    pairs = json.loads((page / "pairs.json").read_text())["pairs"]
    assert len(pairs) == 9 and {p["prompt"] for p in pairs} == set(PROMPTS)
    assert all(0 <= p["teacher_presence"] <= 1 and p["files"]["teacher"].startswith("img/") for p in pairs)
    auto = checklist.load_checklist(page / "checklist.json")
    assert auto["reviewer"] == checklist.AUTO_REVIEWER and all(i["source"] == "auto" for i in auto["items"].values())


def test_auto_checklist_never_overwrites_a_reviewers_file(tmp_path, models):
    teacher, student = models
    manifest, prompts = _write_inputs(tmp_path)
    human = checklist.save_checklist(tmp_path / "out" / "h" / "checklist.json", _checklist())
    before = human.read_bytes()
    _visual_eval("--manifest", manifest, "--prompts", prompts, "--teacher", teacher, "--student", student,
                 "--run", "h", "--out", tmp_path / "out", "--auto-checklist", "--limit", "1")
    assert human.read_bytes() == before
    html = (tmp_path / "out" / "h" / "index.html").read_text(encoding="utf-8")
    assert "memo small_objects" in html and '"reviewer": "Kim"' in html  # the page starts from the review


# Each Hangul / CJK character of the page's headings drawn on a canvas in the heading's font, compared with the
# drawing of a code point no font has (U+10FFFD): equal pixels mean Chromium drew its missing-glyph box.
MISSING_GLYPHS_JS = """() => {
  const els = Array.from(document.querySelectorAll('h1, h2, h3, th, label, button'));
  const chars = [...new Set(els.flatMap(e => Array.from(e.innerText)).filter(
      c => /[\\u1100-\\u11FF\\u3130-\\u318F\\uAC00-\\uD7A3\\u4E00-\\u9FFF]/.test(c)))];
  const canvas = document.createElement('canvas'); canvas.width = 48; canvas.height = 48;
  const g = canvas.getContext('2d');
  g.font = '32px ' + getComputedStyle(els[0] || document.body).fontFamily;
  const draw = ch => { g.clearRect(0, 0, 48, 48); g.fillText(ch, 4, 38); return canvas.toDataURL(); };
  const box = draw(String.fromCodePoint(0x10FFFD));
  return {checked: chars.length, missing: chars.filter(ch => draw(ch) === box)};
}"""


def test_page_in_headless_chromium(page, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium,
                                     args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            ctx = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 800})
            tab = ctx.new_page()
            tab.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            url = (page / "index.html").as_uri()
            tab.goto(url)
            # lazy thumbnails: scroll every one into view, then wait until all have decoded
            for img in tab.query_selector_all("img"):
                img.scroll_into_view_if_needed()
            tab.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15000)
            glyphs = tab.evaluate(MISSING_GLYPHS_JS)  # Korean headings must not render as empty boxes
            assert glyphs["checked"] > 0 and not glyphs["missing"], (
                f"no glyph for {''.join(glyphs['missing'])!r} in headless Chromium: install a CJK font "
                "(Debian: apt-get install fonts-noto-cjk; the chromium fixture tries)")
            sizes = tab.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
            assert len(sizes) == 18 and all(w > 0 for _, w in sizes), sizes
            tab.select_option("#prompt-filter", "star")
            assert tab.locator(".card:visible").count() == 3 and "3 of 9" in tab.inner_text("#shown")
            assert tab.locator("#badge-small_objects").inner_text() == "auto"
            tab.check('input[name="verdict-small_objects"][value="Fail"]')
            tab.fill("#memo-small_objects", "tiny star lost on 000005")
            tab.fill("#reviewer", "Kim")
            assert tab.locator("#badge-small_objects").inner_text() == "human"
            with tab.expect_download() as info:
                tab.click("#save")
            download = info.value
            assert download.suggested_filename == "checklist.json"
            saved = tmp_path / "out" / "t" / "checklist.json"
            saved.parent.mkdir(parents=True)
            download.save_as(saved)
            tab.reload()  # the edits persist in localStorage
            assert tab.input_value("#memo-small_objects") == "tiny star lost on 000005"
            assert tab.input_value("#reviewer") == "Kim"
        finally:
            browser.close()
    assert not problems, problems
    data = checklist.load_checklist(saved)
    assert data["reviewer"] == "Kim" and data["run"] == "t" and data["index_html"] == str(page / "index.html")
    assert data["items"]["small_objects"] == {"verdict": "Fail", "memo": "tiny star lost on 000005",
                                              "source": "human"}
    assert all(data["items"][k]["source"] == "auto" for k in checklist.ITEMS if k != "small_objects")
    checklist.import_for_report("t", root=tmp_path / "reports", out_root=tmp_path / "out")
    text = render_report("t", root=tmp_path / "reports").read_text()
    section = text.split("## 3)")[1].split("## 4)")[0]
    assert re.search(r"\| 작은 물체 분할 안정성 \| Fail\[\^\d+\] \| tiny star lost on 000005 \|", section), section
