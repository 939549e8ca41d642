"""Аналитика 360: analysis time for one object over 10 000 market listings, Python twin vs JS twin (Node).

Target: < 1 s per analysis in each. The market is the synthetic demo generator's (bot/analytics/demo_data.py)
with 10 000 listings; a few objects are timed (a typical one, one whose criteria widen). The Node side
loads gas/src/analysis.js exactly as the Node tests do. Both twins' reports on this data are also compared.
Also printed: the summary text and the PDF rendering time (Python).

Run: `.venv/bin/python -m bench.analytics_compute [--listings 10000] [--runs 7]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from bot.analytics.analysis import analyze, render_summary, report_to_dict
from bot.analytics.demo_data import demo_market, demo_objects
from bot.analytics.pdf import render_pdf

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 11, 24)
SEED = 360
CODES = ("DEMO-0001", "DEMO-0018")

NODE_SCRIPT = """
const fs = require('fs');
const A = require(process.argv[2]);
const input = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const runs = Number(process.argv[4]);
const out = {};
for (const code of input.codes) {
  A.analyze(code, input.objects, input.market, input.today);  // warm-up (JIT)
  const times = [];
  let report = null;
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    report = A.analyze(code, input.objects, input.market, input.today);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  out[code] = {times, report};
}
process.stdout.write(JSON.stringify(out));
"""


def ms(values: list[float]) -> str:
    """`median 123.4 ms (min 120.1)`."""
    return f"median {statistics.median(values):7.1f} ms (min {min(values):6.1f})"


def python_times(objects: list[dict[str, str]], market: list[dict[str, str]], code: str, runs: int) -> list[float]:
    """Wall time of analyze() in ms, `runs` times."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        analyze(code, objects, market, TODAY)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main(args: argparse.Namespace) -> None:
    objects, market = demo_objects(SEED, TODAY), demo_market(SEED + 1, TODAY, count=args.listings)
    print(f"Analysis over {len(market)} market listings (synthetic demo data), {args.runs} runs each; target < 1 s")
    reports = {}
    for code in CODES:
        report = analyze(code, objects, market, TODAY)
        reports[code] = report
        label = f"{code} (level {report.criteria_level}, {report.comparables_count} comparables)"
        print(f"  Python  {label:42} {ms(python_times(objects, market, code, args.runs))}")

    node = shutil.which("node")
    if node is None:
        print("  Node    absent: JS twin not timed")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "input.json"
            data.write_text(
                json.dumps(
                    {"codes": CODES, "objects": objects, "market": market, "today": TODAY.isoformat()},
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )
            script = Path(tmp) / "bench.js"
            script.write_text(NODE_SCRIPT, encoding="utf-8")
            done = subprocess.run(
                [node, str(script), str(ROOT / "gas" / "src" / "analysis.js"), str(data), str(args.runs)],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
        results = json.loads(done.stdout)
        agree = True
        for code in CODES:
            report = reports[code]
            label = f"{code} (level {report.criteria_level}, {report.comparables_count} comparables)"
            print(f"  Node    {label:42} {ms(results[code]['times'])}")
            agree &= json.loads(json.dumps(report_to_dict(report))) == results[code]["report"]
        print(f"  twins agree on these reports: {'yes' if agree else 'NO'}")

    report = reports[CODES[0]]
    t0 = time.perf_counter()
    summary = render_summary(report)
    t1 = time.perf_counter()
    pdf = render_pdf(report)
    t2 = time.perf_counter()
    print(f"  summary text: {(t1 - t0) * 1000:.2f} ms, {len(summary)} characters (limit 3500)")
    print(f"  PDF (reportlab): {(t2 - t1) * 1000:.0f} ms, {len(pdf) // 1024} KiB (first call registers the font)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args())
