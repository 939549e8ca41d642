/**
 * The Аналитика 360 report as HTML, turned into a PDF by Apps Script (HtmlService → PDF blob).
 *
 * Pure functions over the report of analysis.js (the same figures and labels as the Python PDF);
 * the worker adds the chart image and stores the PDF in Drive.
 */

/** @param {string} text @returns {string} */
function escapeHtml_(text) {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/**
 * Label/value rows of the figures table (same as bot/analytics/pdf.py).
 * @param {Report} report @returns {string[][]}
 */
function reportFigureRows(report) {
  var n = report.comparables_count;
  var rows = [
    ['Цена объекта', fmtRub(report.price)],
    ['Цена за м² объекта', fmtRub(report.price_per_m2) + '/м²'],
    ['В продаже', report.days_on_market !== null ? report.days_on_market + ' дн.' : 'нет данных'],
    ['Сравнимых объявлений', n + ' ' + plural(n, 'объявление', 'объявления', 'объявлений') + ' (' +
      report.criteria + ')'],
  ];
  if (report.median_ppm2 !== null && report.q1_ppm2 !== null && report.q3_ppm2 !== null) {
    rows.push(['Медиана цены за м²', fmtRub(report.median_ppm2) + '/м²']);
    rows.push(['Квартили цены за м² (25% – 75%)', fmtInt(report.q1_ppm2) + ' – ' + fmtRub(report.q3_ppm2) + '/м²']);
  }
  if (report.min_ppm2 !== null && report.max_ppm2 !== null) {
    rows.push(['Минимум – максимум за м²', fmtInt(report.min_ppm2) + ' – ' + fmtRub(report.max_ppm2) + '/м²']);
  }
  if (report.median_price !== null) rows.push(['Медианная цена аналога', fmtRub(report.median_price)]);
  if (report.diff_from_median_pct !== null) {
    rows.push(['Отклонение от медианы', fmtSignedPct(report.diff_from_median_pct)]);
  }
  if (report.price_percentile !== null) {
    rows.push(['Ранг цены', 'дороже ' + fmtDec(report.price_percentile) + '% конкурентов']);
  }
  rows.push(['Тренд медианы за ' + TREND_MONTHS + ' мес.',
    report.trend_change_pct !== null ? fmtSignedPct(report.trend_change_pct) : 'недостаточно данных']);
  rows.push(['Типичный срок экспозиции', report.typical_days_on_market !== null ?
    report.typical_days_on_market + ' дн. (снято с продажи: ' + report.sold_count + ')' : 'нет данных о датах']);
  return rows;
}

/** @type {Object<string, string>} */
var VERDICT_BACKGROUND_ = {lower: '#fdecea', keep: '#e8f5e9', raise: '#e3f2fd', insufficient: '#f5f5f5'};

/**
 * The whole report page as HTML.
 * @param {Report} report
 * @param {string|null} narrative an AI paragraph, used only if usableNarrative() accepts it
 * @param {string|null} chartDataUri a PNG of the trend chart as a data: URI, or null
 * @returns {string}
 */
function reportHtml(report, narrative, chartDataUri) {
  var reasons = narrative && usableNarrative(narrative, report) ? [squash_(narrative)] : report.reasoning;
  var subtitle = [capitalized_(report.object_type), roomsLabel_(report.rooms),
    fmtDec(report.area) + '\u00a0м²', report.district].filter(function (p) { return p; }).join(' · ');
  var rows = reportFigureRows(report).map(function (r, i) {
    return '<tr style="background:' + (i % 2 ? '#f0f4f8' : '#ffffff') + '"><td style="padding:4px 6px;' +
      'width:38%">' + escapeHtml_(r[0]) + '</td><td style="padding:4px 6px">' + escapeHtml_(r[1]) + '</td></tr>';
  }).join('');
  var trendRows = report.trend.map(function (p) {
    return '<td style="padding:3px 6px;text-align:center">' + escapeHtml_(monthLabel(p.month)) + '<br>' +
      (p.median_ppm2 !== null ? escapeHtml_(fmtInt(p.median_ppm2)) : '—') + '</td>';
  }).join('');
  var notes = [];
  if (report.criteria_note) notes.push(report.criteria_note);
  notes.push('Расчёт по ' + fmtInt(report.market_listings) + ' ' +
    plural(report.market_listings, 'объявлению', 'объявлениям', 'объявлениям') + ' рынка. Аналоги: ' +
    report.criteria + '; объявления активные или снятые не раньше чем за 180 дней. ' +
    'Квартили — линейная интерполяция; медиана месяца в тренде — при 3 объявлениях и больше (иначе «—»).');
  return '<!DOCTYPE html><html><head><meta charset="utf-8"><style>' +
    'body{font-family:Arial,sans-serif;color:#1f2933;font-size:11px}' +
    'h1{font-size:20px;margin:0 0 4px}h2{font-size:13px;color:#1f5fa8;margin:14px 0 6px}' +
    '.muted{color:#616e7c}table{border-collapse:collapse;width:100%}' +
    '</style></head><body>' +
    '<h1>Аналитика 360 · ' + escapeHtml_(report.object_code) + '</h1>' +
    '<div class="muted">' + escapeHtml_(subtitle) + '</div>' +
    (report.address ? '<div class="muted">' + escapeHtml_(report.address) + '</div>' : '') +
    '<div class="muted">Отчёт на ' + escapeHtml_(fmtDateRu(report.today)) + '</div>' +
    '<div style="margin:12px 0 6px;padding:8px;font-weight:bold;font-size:13px;background:' +
    (VERDICT_BACKGROUND_[report.recommendation] || '#f5f5f5') + '">Рекомендация: ' +
    escapeHtml_(recommendationLine(report)) + '</div>' +
    reasons.map(function (r) { return '<div>' + escapeHtml_(r) + '</div>'; }).join('') +
    '<h2>Ключевые показатели</h2><table>' + rows + '</table>' +
    '<h2>Медиана цены за м² аналогов по месяцам, ₽</h2>' +
    (chartDataUri ? '<img src="' + chartDataUri + '" style="width:100%">' : '') +
    '<table><tr>' + trendRows + '</tr></table>' +
    notes.map(function (n) { return '<p class="muted" style="font-size:9px">' + escapeHtml_(n) + '</p>'; })
      .join('') +
    '<p class="muted" style="font-size:9px">MarketingBot · Аналитика 360 · оценка носит справочный характер</p>' +
    '</body></html>';
}

if (typeof module !== 'undefined') {
  /** @type {any} */ (module).exports = {reportHtml: reportHtml, reportFigureRows: reportFigureRows};
}
