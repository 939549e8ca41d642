"""The Аналитика 360 PDF: it opens (pdftoppm renders it), embeds a Cyrillic font, and its figures match the text."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from bot.analytics.analysis import Report, analyze, recommendation_line, render_summary
from bot.analytics.demo_data import demo_market, demo_objects
from bot.analytics.pdf import ReportFontNotFound, find_fonts, render_pdf

TODAY = date(2026, 11, 24)
VECTORS_DIR = Path(__file__).resolve().parents[2] / "gas" / "test" / "vectors"
POPPLER = ("pdftoppm", "pdftotext", "pdfinfo", "pdffonts")
_NUMBER = re.compile("(?<![0-9A-Za-zА-Яа-яЁё_])[0-9]{1,3}(?:[ \u00a0][0-9]{3})+(?:,[0-9]+)?|[0-9]+(?:,[0-9]+)?")

if any(shutil.which(tool) is None for tool in POPPLER):
    if os.environ.get("CI"):
        raise RuntimeError("poppler-utils (pdftoppm, pdftotext) is required under CI: apt-get install poppler-utils")
    pytest.skip("poppler-utils is not installed", allow_module_level=True)


def vector_report(name: str) -> Report:
    """The report of one shared vector."""
    v = json.loads((VECTORS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return analyze(v["object_code"], v["objects"], v["market"], date.fromisoformat(v["today"]))


def demo_report(code: str = "DEMO-0001") -> Report:
    """A report on the synthetic demo data."""
    return analyze(code, demo_objects(1, TODAY), demo_market(1, TODAY), TODAY)


def pdf_text(path: Path) -> str:
    """The PDF's text as pdftotext reads it, whitespace folded."""
    out = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
    return " ".join(out.replace("\u00a0", " ").split())


def numbers(text: str) -> set[str]:
    """Every number in a text, thousands separators removed: `5 200 000` → `5200000`, `41,7` stays."""
    return {re.sub("[ \u00a0]", "", n) for n in _NUMBER.findall(text.replace("\u00a0", " "))}


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, Report]:
    """A rendered demo report on disk."""
    report = demo_report()
    path = tmp_path / "report.pdf"
    path.write_bytes(render_pdf(report))
    return path, report


def test_pdf_opens_and_renders_to_png(written: tuple[Path, Report], tmp_path: Path) -> None:
    """pdftoppm renders every page (one or two A4 pages) to a PNG with visible content."""
    path, _ = written
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    assert 1 <= pages <= 2
    assert "595.276 x 841.89 pts (A4)" in info
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(path), str(tmp_path / "page")], check=True)
    pngs = sorted(tmp_path.glob("page*.png"))
    assert len(pngs) == pages
    with Image.open(pngs[0]) as image:
        gray = image.convert("L")
        dark = sum(gray.histogram()[:200])
        assert dark > 0.02 * gray.width * gray.height  # text, table and chart, not a blank page


def test_pdf_embeds_a_cyrillic_font(written: tuple[Path, Report]) -> None:
    """The PDF embeds DejaVuSans, so Cyrillic text renders, and its text reads back in Russian."""
    path, report = written
    fonts = subprocess.run(["pdffonts", str(path)], check=True, capture_output=True, text=True).stdout
    assert "DejaVuSans" in fonts
    text = pdf_text(path)
    assert f"Аналитика 360 · {report.object_code}" in text
    assert "Ключевые показатели" in text


@pytest.mark.parametrize("name", ["hand_small", "demo_sample", "widening_any_rooms", "listings_without_dates"])
def test_pdf_figures_match_the_summary(name: str, tmp_path: Path) -> None:
    """Every number of the Telegram summary appears in the PDF, and so does the recommendation."""
    report = vector_report(name)
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(render_pdf(report))
    text = pdf_text(path)
    summary = render_summary(report)
    missing = numbers(summary) - numbers(text)
    assert not missing, f"figures of the summary not in the PDF: {sorted(missing)}"
    assert " ".join(recommendation_line(report).replace("\u00a0", " ").split()) in text


@pytest.mark.parametrize("name", ["no_comparables", "one_comparable"])
def test_pdf_of_thin_data_still_renders(name: str, tmp_path: Path) -> None:
    """With no or one comparable the PDF still renders, with its placeholder and no recommendation."""
    report = vector_report(name)
    path = tmp_path / "thin.pdf"
    path.write_bytes(render_pdf(report))
    text = pdf_text(path)
    assert "не сформирована — мало данных" in text
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(path), str(tmp_path / "p")], check=True)
    assert list(tmp_path.glob("p*.png"))


def test_checked_narrative_goes_into_the_pdf(tmp_path: Path) -> None:
    """A narrative that passes the number check replaces the template reasoning in the PDF."""
    report = vector_report("hand_small")
    narrative = "Цена соответствует рынку: медиана 205 000 ₽/м², объект дороже 41,7% аналогов."
    path = tmp_path / "n.pdf"
    path.write_bytes(render_pdf(report, narrative))
    text = pdf_text(path)
    assert "Цена соответствует рынку" in text
    assert "Рыночный диапазон — от нижнего до верхнего квартиля" not in text


def test_missing_font_is_a_named_error(tmp_path: Path) -> None:
    """Without a DejaVu TTF in the searched folders, find_fonts raises ReportFontNotFound naming the package."""
    with pytest.raises(ReportFontNotFound, match="fonts-dejavu-core"):
        find_fonts([tmp_path])


def test_trend_chart_shows_every_month_it_claims(tmp_path: Path) -> None:
    """All 6 months are on the trend axis; months without a median say «н/д» and the title counts them."""
    report = demo_report()
    thin = tuple(replace(p, median_ppm2=None, count=1) if i in (1, 3) else p for i, p in enumerate(report.trend))
    known = sum(1 for p in thin if p.median_ppm2 is not None)
    assert len(thin) == 6 and known < 5
    path = tmp_path / "trend.pdf"
    path.write_bytes(render_pdf(replace(report, trend=thin)))
    text = pdf_text(path)
    assert f"за 6 мес. (медиана есть за {known} из 6)" in text
    assert text.count("н/д") == (6 - known) + 1  # one per month without a median, one in the footnote
    whole = tuple(replace(p, median_ppm2=p.median_ppm2 or 850_000, count=max(p.count, 3)) for p in report.trend)
    full = tmp_path / "full.pdf"
    full.write_bytes(render_pdf(replace(report, trend=whole)))
    assert "медиана есть за" not in pdf_text(full) and pdf_text(full).count("н/д") == 1


def test_footnote_names_the_criteria_once(written: tuple[Path, Report]) -> None:
    """The footnote reads «Аналоги: тот же тип, …», not «объявления того же типа (тот же тип, …)»."""
    path, report = written
    text = pdf_text(path)
    assert f"Аналоги: {report.criteria};" in text and "того же типа (" not in text
