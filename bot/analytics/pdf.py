"""The Аналитика 360 PDF: one or two A4 pages with the figures, two charts and the recommendation.

reportlab's built-in fonts have no Cyrillic, so a DejaVu TTF is registered: matplotlib's bundled copy
when matplotlib is installed, else the system one (Debian: fonts-dejavu-core).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from bot.analytics.analysis import (
    NBSP,
    TREND_MONTHS,
    Recommendation,
    Report,
    fmt_date_ru,
    fmt_dec,
    fmt_int,
    fmt_rub,
    fmt_signed_pct,
    plural,
    recommendation_line,
    usable_narrative,
)

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
SYSTEM_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)
CONTENT_WIDTH = 169 * mm  # A4 minus the 18 mm margins and the frame's 6 pt padding
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
ACCENT = colors.HexColor("#1f5fa8")
OBJECT_RED = colors.HexColor("#c0392b")
GRID = colors.HexColor("#d9e2ec")
BAND = colors.HexColor("#f0f4f8")
VERDICT_COLORS = {
    Recommendation.LOWER: colors.HexColor("#fdecea"),
    Recommendation.KEEP: colors.HexColor("#e8f5e9"),
    Recommendation.RAISE: colors.HexColor("#e3f2fd"),
    Recommendation.INSUFFICIENT: colors.HexColor("#f5f5f5"),
}


class ReportFontNotFound(Exception):
    """No TTF with Cyrillic glyphs was found (install fonts-dejavu-core or matplotlib)."""


def _font_dirs() -> list[Path]:
    dirs: list[Path] = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin is not None:
        dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    dirs.extend(SYSTEM_FONT_DIRS)
    return dirs


def find_fonts(dirs: Sequence[Path] | None = None) -> tuple[Path, Path]:
    """Paths of DejaVuSans.ttf and DejaVuSans-Bold.ttf from the first folder that has both."""
    for folder in dirs if dirs is not None else _font_dirs():
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    raise ReportFontNotFound("DejaVuSans.ttf not found: install the Debian package fonts-dejavu-core (or matplotlib)")


def register_fonts() -> None:
    """Register the Cyrillic fonts with reportlab once per process (its font registry is global)."""
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    regular, bold = find_fonts()
    pdfmetrics.registerFont(TTFont(FONT, str(regular)))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(bold)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("base", fontName=FONT, fontSize=9.5, leading=13, textColor=INK, alignment=TA_LEFT)
    return {
        "body": base,
        "title": ParagraphStyle("title", parent=base, fontName=FONT_BOLD, fontSize=18, leading=22),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=10.5, leading=14, textColor=MUTED),
        "h2": ParagraphStyle(
            "h2",
            parent=base,
            fontName=FONT_BOLD,
            fontSize=11.5,
            leading=15,
            spaceBefore=8,
            spaceAfter=4,
            textColor=ACCENT,
        ),
        "verdict": ParagraphStyle("verdict", parent=base, fontName=FONT_BOLD, fontSize=11.5, leading=15),
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=10.5, textColor=MUTED),
        "cell": ParagraphStyle("cell", parent=base, fontSize=9.5, leading=12),
    }


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def _or_none(value: str | None, fallback: str = "нет данных") -> str:
    return value if value is not None else fallback


def _figures_rows(report: Report) -> list[tuple[str, str]]:
    n = report.comparables_count
    rows: list[tuple[str, str]] = [
        ("Цена объекта", fmt_rub(report.price)),
        ("Цена за м² объекта", f"{fmt_rub(report.price_per_m2)}/м²"),
        ("В продаже", _or_none(f"{report.days_on_market} дн." if report.days_on_market is not None else None)),
        ("Сравнимых объявлений", f"{n} {plural(n, 'объявление', 'объявления', 'объявлений')} ({report.criteria})"),
    ]
    if report.median_ppm2 is not None and report.q1_ppm2 is not None and report.q3_ppm2 is not None:
        rows += [
            ("Медиана цены за м²", f"{fmt_rub(report.median_ppm2)}/м²"),
            ("Квартили цены за м² (25% – 75%)", f"{fmt_int(report.q1_ppm2)} – {fmt_rub(report.q3_ppm2)}/м²"),
        ]
    if report.min_ppm2 is not None and report.max_ppm2 is not None:
        rows.append(("Минимум – максимум за м²", f"{fmt_int(report.min_ppm2)} – {fmt_rub(report.max_ppm2)}/м²"))
    if report.median_price is not None:
        rows.append(("Медианная цена аналога", fmt_rub(report.median_price)))
    if report.diff_from_median_pct is not None:
        rows.append(("Отклонение от медианы", fmt_signed_pct(report.diff_from_median_pct)))
    if report.price_percentile is not None:
        rows.append(("Ранг цены", f"дороже {fmt_dec(report.price_percentile)}% конкурентов"))
    rows.append(
        (
            f"Тренд медианы за {TREND_MONTHS} мес.",
            fmt_signed_pct(report.trend_change_pct) if report.trend_change_pct is not None else "недостаточно данных",
        )
    )
    rows.append(
        (
            "Типичный срок экспозиции",
            f"{report.typical_days_on_market} дн. (снято с продажи: {report.sold_count})"
            if report.typical_days_on_market is not None
            else "нет данных о датах",
        )
    )
    return rows


def _figures_table(report: Report, styles: dict[str, ParagraphStyle]) -> Table:
    data = [[_p(label, styles["cell"]), _p(value, styles["cell"])] for label, value in _figures_rows(report)]
    table = Table(data, colWidths=[68 * mm, CONTENT_WIDTH - 68 * mm])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("ROWBACKGROUNDS", (0, 0), (-1, -1), [colors.white, BAND]),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, GRID),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


CHART_WIDTH, CHART_HEIGHT = 84 * mm, 62 * mm
SHORT_MONTHS = ("янв", "фев", "мар", "апр", "май", "июн", "июл", "авг", "сен", "окт", "ноя", "дек")


def _thousands(value: float) -> str:
    return f"{fmt_int(round(value / 1000))}{NBSP}тыс."


def _short_month(month: str) -> str:
    return f"{SHORT_MONTHS[int(month[5:7]) - 1]}\n{month[0:4]}"


def _placeholder(drawing: Drawing, text: str) -> Drawing:
    drawing.add(
        String(
            CHART_WIDTH / 2, CHART_HEIGHT / 2, text, fontName=FONT, fontSize=8.5, fillColor=MUTED, textAnchor="middle"
        )
    )
    return drawing


def _trend_chart(report: Report) -> Drawing:
    drawing = Drawing(CHART_WIDTH, CHART_HEIGHT)
    points = [(i, float(p.median_ppm2)) for i, p in enumerate(report.trend) if p.median_ppm2 is not None]
    if not points:
        return _placeholder(drawing, "Мало объявлений с датами за 6 месяцев")
    reference = float(report.price_per_m2)
    last = len(report.trend) - 1
    values = [y for _, y in points] + [reference]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.15, high * 0.02)
    plot = LinePlot()
    plot.x, plot.y = 17 * mm, 13 * mm
    plot.width, plot.height = CHART_WIDTH - 20 * mm, CHART_HEIGHT - 24 * mm
    plot.data = [points, [(0, reference), (last, reference)]]
    plot.lines[0].strokeColor, plot.lines[0].strokeWidth = ACCENT, 2
    plot.lines[0].symbol = makeMarker("FilledCircle", size=4, fillColor=ACCENT, strokeColor=ACCENT)
    plot.lines[1].strokeColor, plot.lines[1].strokeWidth = OBJECT_RED, 1.2
    plot.lines[1].strokeDashArray = (4, 3)
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = -0.4, last + 0.4
    plot.xValueAxis.valueSteps = list(range(len(report.trend)))
    # Every month the title claims is on the axis; one with too few listings for a median says so.
    labels = [_short_month(p.month) + ("" if p.median_ppm2 is not None else "\nн/д") for p in report.trend]
    plot.xValueAxis.labelTextFormat = lambda v: labels[round(v)] if 0 <= round(v) <= last else ""
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax = low - pad, high + pad
    plot.yValueAxis.labelTextFormat = _thousands
    plot.yValueAxis.gridStrokeColor, plot.yValueAxis.visibleGrid = GRID, True
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.labels.fontName, axis.labels.fontSize, axis.labels.fillColor = FONT, 7, MUTED
        axis.strokeColor = GRID
    drawing.add(plot)
    legend = Legend()
    legend.x, legend.y = 4 * mm, CHART_HEIGHT - 1 * mm
    legend.fontName, legend.fontSize, legend.columnMaximum, legend.alignment = FONT, 7.5, 2, "right"
    legend.dx, legend.dy, legend.dxTextSpace, legend.deltay = 10, 2, 4, 9
    legend.colorNamePairs = [
        (ACCENT, "медиана аналогов, ₽/м²"),
        (OBJECT_RED, f"объект: {fmt_rub(report.price_per_m2)}/м²"),
    ]
    drawing.add(legend)
    return drawing


def _histogram_chart(report: Report) -> Drawing:
    drawing = Drawing(CHART_WIDTH, CHART_HEIGHT)
    bins = report.histogram
    if not bins:
        return _placeholder(drawing, "Сравнимых объявлений нет")
    chart = VerticalBarChart()
    chart.x, chart.y = 10 * mm, 13 * mm
    chart.width, chart.height = CHART_WIDTH - 13 * mm, CHART_HEIGHT - 24 * mm
    chart.data = [[b.count for b in bins]]
    chart.categoryAxis.categoryNames = [str(round(b.low / 1000)) for b in bins]
    chart.categoryAxis.labels.fontName, chart.categoryAxis.labels.fontSize = FONT, 7
    chart.categoryAxis.labels.fillColor = MUTED
    chart.categoryAxis.strokeColor = GRID
    chart.valueAxis.labels.fontName, chart.valueAxis.labels.fontSize = FONT, 7
    chart.valueAxis.labels.fillColor = MUTED
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labelTextFormat = lambda v: str(int(v)) if v == int(v) else ""
    chart.valueAxis.visibleGrid, chart.valueAxis.gridStrokeColor = True, GRID
    chart.valueAxis.strokeColor = GRID
    chart.bars[0].fillColor, chart.bars[0].strokeColor = colors.HexColor("#9fb3c8"), None
    own = _object_bin(report)
    if own is not None:
        chart.bars[(0, own)].fillColor = OBJECT_RED
    drawing.add(chart)
    legend = "красным — интервал с ценой объекта" if own is not None else "цена объекта вне диапазона аналогов"
    drawing.add(
        String(4 * mm, CHART_HEIGHT - 4 * mm, f"число объявлений; {legend}", fontName=FONT, fontSize=7.5, fillColor=INK)
    )
    drawing.add(
        String(
            CHART_WIDTH / 2,
            2 * mm,
            "нижняя граница интервала цены за м², тыс. ₽",
            fontName=FONT,
            fontSize=7,
            fillColor=MUTED,
            textAnchor="middle",
        )
    )
    return drawing


def _object_bin(report: Report) -> int | None:
    for i, b in enumerate(report.histogram):
        last = i == len(report.histogram) - 1
        if b.low <= report.price_per_m2 < b.high or (last and b.low <= report.price_per_m2 <= b.high):
            return i
    return None


def _trend_title(report: Report) -> str:
    """`за 6 мес.`, and how many of those months have a median when not all do."""
    title = f"Цена за м² аналогов за {TREND_MONTHS} мес."
    known = sum(1 for p in report.trend if p.median_ppm2 is not None)
    if 0 < known < len(report.trend):
        title += f" (медиана есть за {known} из {len(report.trend)})"
    return title


def _charts(report: Report, styles: dict[str, ParagraphStyle]) -> Table:
    table = Table(
        [
            [
                _p(_trend_title(report), styles["h2"]),
                _p("Распределение цены за м²", styles["h2"]),
            ],
            [_trend_chart(report), _histogram_chart(report)],
        ],
        colWidths=[CONTENT_WIDTH / 2, CONTENT_WIDTH / 2],
    )
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return table


def _verdict_box(report: Report, styles: dict[str, ParagraphStyle]) -> Table:
    box = Table([[_p(f"Рекомендация: {recommendation_line(report)}", styles["verdict"])]], colWidths=[CONTENT_WIDTH])
    box.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), VERDICT_COLORS[report.recommendation]),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 7),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 7),
            ]
        )
    )
    return box


def _footer(canvas: Canvas, doc: object) -> None:
    canvas.saveState()
    canvas.setFont(FONT, 7.5)
    canvas.setFillColor(MUTED)
    canvas.drawString(18 * mm, 10 * mm, "MarketingBot · Аналитика 360 · оценка носит справочный характер")
    canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"стр. {canvas.getPageNumber()}")
    canvas.restoreState()


def render_pdf(report: Report, narrative: str | None = None) -> bytes:
    """The report as PDF bytes (A4, one or two pages); `narrative` replaces the template reasoning if valid."""
    register_fonts()
    styles = _styles()
    subtitle = " · ".join(
        part
        for part in (
            report.object_type[:1].upper() + report.object_type[1:],
            "студия" if report.rooms == 0 else (f"{report.rooms} комн." if report.rooms is not None else ""),
            f"{fmt_dec(report.area)}{NBSP}м²",
            report.district,
        )
        if part
    )
    story: list[object] = [
        _p(f"Аналитика 360 · {report.object_code}", styles["title"]),
        _p(subtitle, styles["subtitle"]),
    ]
    if report.address:
        story.append(_p(report.address, styles["subtitle"]))
    story += [
        _p(f"Отчёт на {fmt_date_ru(report.today)}", styles["subtitle"]),
        Spacer(1, 4 * mm),
        _verdict_box(report, styles),
        Spacer(1, 2 * mm),
    ]
    reasons = (
        [" ".join(narrative.split())]
        if narrative is not None and usable_narrative(narrative, report)
        else list(report.reasoning)
    )
    story += [_p(reason, styles["body"]) for reason in reasons]
    story += [_p("Ключевые показатели", styles["h2"]), _figures_table(report, styles)]
    story.append(KeepTogether([Spacer(1, 2 * mm), _charts(report, styles)]))
    notes = [report.criteria_note] if report.criteria_note else []
    notes.append(
        f"Расчёт по {fmt_int(report.market_listings)} "
        f"{plural(report.market_listings, 'объявлению', 'объявлениям', 'объявлениям')} рынка. Аналоги: "
        f"{report.criteria}; объявления активные или снятые не раньше чем за 180 дней. "
        "Квартили — линейная интерполяция; медиана месяца на графике тренда — при 3 объявлениях и больше "
        "(иначе «н/д»); срок экспозиции активных объявлений считается до даты отчёта."
    )
    story += [Spacer(1, 3 * mm)] + [_p(note, styles["small"]) for note in notes]

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"Аналитика 360 · {report.object_code}",
        author="MarketingBot",
    )
    doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return buffer.getvalue()
