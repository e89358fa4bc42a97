"""How a workbook looks and prints: cell formats, widths that fit, chart colours, page setup.

Widths are in Excel's unit (the width of a digit of the default font, Calibri 11: 7 pixels);
text is measured with XlsxWriter's table of Excel character widths.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from xlsxwriter.utility import xl_pixel_width

NUMBER_FORMATS = {
    "int": "#,##0",
    "float": "#,##0.00",
    "pct": "0.0%",
    "datetime": "yyyy-mm-dd hh:mm",
    "date": "yyyy-mm-dd",
    "delta_int": "+#,##0;-#,##0;0",
    "delta_pct": "+0.0%;-0.0%;0.0%",
}
# Decimals each number format shows, as a fraction of 1 (0.0% shows three).
DECIMALS = {"int": 0, "delta_int": 0, "float": 2, "pct": 3, "delta_pct": 3}
STYLE_PROPERTIES = {
    "header": {"bold": True, "bg_color": "#DDEBF7"},
    "title": {"bold": True, "font_size": 16},
    "bold": {"bold": True},
    "link": {"font_color": "#0563C1", "underline": 1},
    "unknown": {"bg_color": "#EDEDED"},
}
TONE_PROPERTIES = {
    "bad": {"font_color": "#9C0006", "bg_color": "#FFC7CE"},
    "warn": {"font_color": "#9C5700", "bg_color": "#FFEB9C"},
}
TABLE_STYLE = "Table Style Medium 2"

MAX_TEXT_WIDTH = 60.0
FILTER_BUTTON = 2.5  # a table header's drop-down button, in digit widths
CELL_PADDING = 1.0
DIGIT_PX = 7
ROW_PX = 20  # Excel's default row height, 15 points


class Formats:
    """XlsxWriter formats by (style, tone), made once per workbook."""

    def __init__(self, book):
        self.book = book
        self.cache: dict[tuple, object] = {}

    def get(self, style: str, tone: Optional[str] = None):
        key = (style, tone)
        if key not in self.cache:
            props = dict(STYLE_PROPERTIES.get(style, {}))
            if style in NUMBER_FORMATS:
                props["num_format"] = NUMBER_FORMATS[style]
            if tone:
                props.update(TONE_PROPERTIES[tone])
            self.cache[key] = self.book.add_format(props) if props else None
        return self.cache[key]

    def highlight(self, tone: str):
        """The format conditional formatting applies to a highlighted row."""
        key = ("highlight", tone)
        if key not in self.cache:
            self.cache[key] = self.book.add_format(TONE_PROPERTIES[tone])
        return self.cache[key]


# --------------------------------------------------------------------------- widths


def text_width(text: str, style: str = "default") -> float:
    """Width of the widest line of `text` in digit widths, for the font of `style`: at least a digit's width per
    character, so that narrow letters in a reader's substitute font are never cut."""
    widest = max((max(xl_pixel_width(line), DIGIT_PX * len(line)) for line in text.split("\n")), default=0)
    if style == "title":
        widest *= 16 / 11
    if style in ("header", "bold", "title"):
        widest *= 1.1
    return widest / DIGIT_PX


FIXED_TEXT = {"datetime": "0000-00-00 00:00", "date": "0000-00-00", "bool": "FALSE"}


def shown(value, style: str) -> str:
    """The text Excel shows for a number, a date or a boolean in `style` (used to measure it)."""
    if isinstance(value, bool):
        return FIXED_TEXT["bool"]
    if isinstance(value, dt.datetime):
        return FIXED_TEXT["datetime"]
    if isinstance(value, dt.date):
        return FIXED_TEXT["date"]
    if style == "delta_pct":
        return f"{value:+.1%}"
    if style == "pct":
        return f"{value:.1%}"
    if style == "float":
        return f"{value:,.2f}"
    return f"{value:+,.0f}" if style == "delta_int" else f"{value:,.0f}"


def fit(needed: float, minimum: Optional[float] = None) -> float:
    """A column width that shows `needed` digit widths, at least `minimum`, at most MAX_TEXT_WIDTH (text only)."""
    width = max(needed + CELL_PADDING, minimum or 0.0, 4.0)
    return round(min(width, max(MAX_TEXT_WIDTH, minimum or 0.0)), 2)


@dataclass
class ColumnMeasure:
    """The widest content of one streamed column, kept while rows go by."""

    longest_text: str = ""
    low: float = 0.0
    high: float = 0.0

    def needed(self, kind: str) -> float:
        if kind in FIXED_TEXT:
            return text_width(FIXED_TEXT[kind])
        if kind in DECIMALS:
            return max(text_width(shown(self.low, kind)), text_width(shown(self.high, kind)), text_width(self.longest_text))
        return text_width(self.longest_text)


def column_px(width: float) -> int:
    """Pixels of a column `width` digit widths wide (XlsxWriter's and Excel's rule)."""
    return int(width * 12 + 0.5) if width < 1 else int(width * DIGIT_PX + 0.5) + 5


# --------------------------------------------------------------------------- chart colours

# Series that mean the same thing everywhere keep the same colour in every workbook.
SERIES_COLOURS = {
    "Runs": "#4472C4", "Completed": "#70AD47", "Failed": "#C00000", "Breaks": "#ED7D31", "Open": "#A5A5A5",
    "MATCHED": "#70AD47", "BREAKS": "#ED7D31", "PARTIAL": "#FFC000", "#EXCEPTION": "#C00000",
    "#TIMEOUT": "#7030A0", "#FORCE": "#5B9BD5", "OPEN (ACTIVE)": "#A5A5A5", "Other": "#D0CECE",
}
# Other series take a colour from their name's digest, so the colour does not depend on the week's order.
PALETTE = ("#264478", "#9E480E", "#636363", "#997300", "#43682B", "#698ED0", "#F1975A", "#B7B7B7", "#FFCD33",
           "#7CAFDD", "#8CC168", "#255E91", "#BF9000", "#843C0C", "#3A3838", "#2E75B6", "#548235", "#C55A11")


def series_colours(names: Sequence[str], chosen: Mapping[str, str] = {}) -> dict[str, str]:
    """A colour per series: `chosen`, then the fixed colours, then the palette by a digest of the name.

    Two names of one chart whose digests meet are told apart by trying the next palette colour,
    in name order, so that the result depends only on the set of names.
    """
    colours = {n: chosen.get(n) or SERIES_COLOURS.get(n) for n in names}
    taken = {c for c in colours.values() if c}
    for name in sorted(n for n in names if not colours[n]):
        start = int(hashlib.md5(name.encode("utf-8")).hexdigest(), 16) % len(PALETTE)
        for step in range(len(PALETTE)):
            colour = PALETTE[(start + step) % len(PALETTE)]
            if colour not in taken or step == len(PALETTE) - 1:
                break
        colours[name] = colour
        taken.add(colour)
    return colours  # type: ignore[return-value]


# --------------------------------------------------------------------------- printing

PAPER_A4 = 9
MARGINS = {"left": 0.4, "right": 0.4, "top": 0.5, "bottom": 0.6}  # inches
PAGE_PX = ((11.69 - 0.8) * 96, (8.27 - 1.1) * 96)  # A4 landscape, printable width and height
SLACK = 0.9  # room for what the estimate misses (taller rows, a printer's own margins)
FOOTER = "&L&A&RPage &P of &N"


def page_setup(ws, header_rows: int = 0) -> None:
    """Landscape A4, a footer with the sheet name and page numbers, the header rows on every page."""
    ws.set_landscape()
    ws.set_paper(PAPER_A4)
    ws.set_margins(**MARGINS)
    ws.set_footer(FOOTER)
    if header_rows:
        ws.repeat_rows(0, header_rows - 1)


@dataclass(frozen=True)
class PrintPlan:
    """A print scale (percent) and the rows (0-based) that start a new page."""

    scale: int
    breaks: list[int]


def plan_pages(width_px: float, last_row: int, blocks: Iterable[tuple[int, int]]) -> PrintPlan:
    """Scale so that the sheet fits the page width and the tallest block of charts fits one page, then break
    pages so that no block is cut and a page ends after each block. `blocks` are (first row, last row),
    0-based; rows are ROW_PX high.

    Excel ignores manual page breaks on a sheet set to "fit to pages", hence a computed scale.
    """
    blocks = sorted(blocks)
    tallest = max((b - a + 1 for a, b in blocks), default=1)
    scale = min(1.0, PAGE_PX[0] * SLACK / max(width_px, 1), PAGE_PX[1] * SLACK / (tallest * ROW_PX))
    percent = max(10, math.floor(scale * 100))
    per_page = max(1, math.floor(PAGE_PX[1] * SLACK / (ROW_PX * percent / 100)))
    after_blocks = sorted({bottom + 1 for _, bottom in blocks})
    breaks, start = [], 0
    while True:
        end = start + per_page
        following = [cut for cut in after_blocks if start < cut <= end]
        if following:
            end = following[0]
        else:
            for top, bottom in blocks:
                if start < top < end <= bottom:  # the page would end inside this block: end before it
                    end = top
        if end > last_row:
            return PrintPlan(percent, breaks)
        breaks.append(end)
        start = end
