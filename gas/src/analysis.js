/**
 * Аналитика 360 — the JavaScript twin of bot/analytics/analysis.py.
 *
 * Plain functions with no Apps Script calls, so Node tests them. The two twins must agree exactly
 * (checked by the shared vectors in gas/test/vectors/): the parsing rules, the widening ladder, the
 * quantile method, the rounding and every Russian sentence are the same. The rules are written out in
 * the docstring of analysis.py; change both files together.
 *
 * Apps Script has no modules: every top-level name here is global in the project, so private helpers
 * end with `_` (Apps Script also hides those from the "Run" menu).
 */

var MIN_COMPARABLES = 5;
var MIN_FOR_RECOMMENDATION = 3;
var RECENT_DAYS = 180;
var TREND_MONTHS = 6;
var MIN_TREND_COUNT = 3;
var HISTOGRAM_BINS = 8;
var SLOW_SALE_FACTOR = 1.5;
var TREND_NOTABLE_PCT = 2.0;
var TARGET_STEP = 10000;
var MIN_AREA = 8.0;
var MAX_AREA = 2000.0;
var MIN_PRICE = 100000.0;
var MAX_PRICE = 50000000000.0;
var MIN_PRICE_PER_M2 = 10000.0;
var MAX_PRICE_PER_M2 = 10000000.0;
var NARRATIVE_MAX_CHARS = 1500;
var SUMMARY_MAX_CHARS = 3500;

var NBSP_ = '\u00a0';
var MINUS_ = '\u2212';

var RECOMMENDATION_LABELS = {
  lower: 'снизить цену',
  keep: 'сохранить цену',
  raise: 'можно поднять цену',
  insufficient: 'не сформирована — мало данных',
};

/**
 * @typedef {{level: number, same_district: boolean, same_rooms: boolean, area_low: number,
 *   area_high: number, area_tolerance_pct: number, description: string}} CriteriaLevel
 * @typedef {{month: string, median_ppm2: number|null, count: number}} TrendPoint
 * @typedef {{low: number, high: number, count: number}} HistogramBin
 * @typedef {{ordinal: number, year: number, month: number}} Day
 * @typedef {{type: string, district: string, rooms: number|null, area: number, price: number,
 *   ppm2: number, listed: Day|null, removed: Day|null}} Listing
 * @typedef {Object<string, *>} Row
 * @typedef {{
 *   object_code: string, object_type: string, district: string, address: string, status: string,
 *   rooms: number|null, area: number, price: number, price_per_m2: number, listed_at: string|null,
 *   days_on_market: number|null, today: string, criteria_level: number, criteria: string,
 *   same_district: boolean, same_rooms: boolean, area_tolerance_pct: number, criteria_note: string|null,
 *   comparables_count: number, market_listings: number, invalid_listings: number,
 *   median_ppm2: number|null, q1_ppm2: number|null, q3_ppm2: number|null, min_ppm2: number|null,
 *   max_ppm2: number|null, median_price: number|null, price_percentile: number|null,
 *   diff_from_median_pct: number|null, trend: TrendPoint[], trend_change_pct: number|null,
 *   typical_days_on_market: number|null, sold_count: number, histogram: HistogramBin[],
 *   recommendation: string, target_price_low: number|null, target_price_high: number|null,
 *   reasoning: string[]
 * }} Report
 */

/** @type {CriteriaLevel[]} */
var LADDER = [
  {level: 1, same_district: true, same_rooms: true, area_low: 0.85, area_high: 1.15, area_tolerance_pct: 15,
    description: 'тот же тип, район и число комнат, площадь ±15%'},
  {level: 2, same_district: true, same_rooms: true, area_low: 0.7, area_high: 1.3, area_tolerance_pct: 30,
    description: 'тот же тип, район и число комнат, площадь ±30%'},
  {level: 3, same_district: true, same_rooms: false, area_low: 0.7, area_high: 1.3, area_tolerance_pct: 30,
    description: 'тот же тип и район, любое число комнат, площадь ±30%'},
  {level: 4, same_district: false, same_rooms: true, area_low: 0.7, area_high: 1.3, area_tolerance_pct: 30,
    description: 'тот же тип и число комнат по всему городу, площадь ±30%'},
  {level: 5, same_district: false, same_rooms: false, area_low: 0.7, area_high: 1.3, area_tolerance_pct: 30,
    description: 'тот же тип по всему городу, любое число комнат, площадь ±30%'},
];

/** The analysis cannot be made; `message` is the Russian text shown to the partner. */
class AnalysisError extends Error {
  /**
   * @param {string} message
   * @param {string|null} [field]
   */
  constructor(message, field) {
    super(message);
    this.name = 'AnalysisError';
    this.kind = 'analysis_error';
    /** @type {string|null} */
    this.field = field === undefined ? null : field;
  }
}

/** No row of Объекты has the requested code. */
class ObjectNotFound extends AnalysisError {
  /** @param {string} message */
  constructor(message) {
    super(message, null);
    this.name = 'ObjectNotFound';
    this.kind = 'object_not_found';
  }
}

/** The object's row is there but its type, area or price is missing or absurd. */
class InvalidObjectData extends AnalysisError {
  /**
   * @param {string} message
   * @param {string} field
   */
  constructor(message, field) {
    super(message, field);
    this.name = 'InvalidObjectData';
    this.kind = 'invalid_object';
  }
}

// ---------------------------------------------------------------- rounding and formatting

/** Round to a whole number, halves away from zero. @param {number} x @returns {number} */
function roundHalfAway(x) {
  var r = Math.floor(Math.abs(x) + 0.5);
  return (x < 0 ? -r : r) + 0;
}

/** Round to one decimal, halves away from zero, never −0. @param {number} x @returns {number} */
function round1(x) {
  var r = Math.floor(Math.abs(x) * 10 + 0.5) / 10;
  return (x < 0 ? -r : r) + 0;
}

/** `5200000` → `5 200 000` with no-break spaces. @param {number} n @returns {string} */
function fmtInt(n) {
  var digits = String(Math.abs(n));
  var groups = [];
  while (digits.length > 3) {
    groups.unshift(digits.slice(-3));
    digits = digits.slice(0, -3);
  }
  groups.unshift(digits);
  return (n < 0 ? MINUS_ : '') + groups.join(NBSP_);
}

/** One-decimal number with a comma: `12.5` → `12,5`. @param {number} x @returns {string} */
function fmtDec(x) {
  var tenths = roundHalfAway(x * 10);
  var sign = tenths < 0 ? MINUS_ : '';
  var abs = Math.abs(tenths);
  var whole = Math.floor(abs / 10);
  var frac = abs % 10;
  return sign + fmtInt(whole) + (frac ? ',' + frac : '');
}

/** `3.1` → `+3,1%`. @param {number} x @returns {string} */
function fmtSignedPct(x) {
  return (x > 0 ? '+' : '') + fmtDec(x) + '%';
}

/** `5200000` → `5 200 000 ₽`. @param {number} n @returns {string} */
function fmtRub(n) {
  return fmtInt(n) + NBSP_ + '₽';
}

/** `2026-11-24` → `24.11.2026`. @param {string} iso @returns {string} */
function fmtDateRu(iso) {
  return iso.slice(8, 10) + '.' + iso.slice(5, 7) + '.' + iso.slice(0, 4);
}

/**
 * The Russian noun form for n.
 * @param {number} n @param {string} one @param {string} few @param {string} many @returns {string}
 */
function plural(n, one, few, many) {
  n = Math.abs(n);
  if (n % 10 === 1 && n % 100 !== 11) return one;
  if (n % 10 >= 2 && n % 10 <= 4 && !(n % 100 >= 12 && n % 100 <= 14)) return few;
  return many;
}

var MONTHS_RU_ = ['январь', 'февраль', 'март', 'апрель', 'май', 'июнь',
  'июль', 'август', 'сентябрь', 'октябрь', 'ноябрь', 'декабрь'];

/** `2026-06` → `июнь 2026`. @param {string} month @returns {string} */
function monthLabel(month) {
  return MONTHS_RU_[parseInt(month.slice(5, 7), 10) - 1] + ' ' + month.slice(0, 4);
}

/** Python-style slice by code points (not UTF-16 units). @param {string} s @param {number} n */
function firstChars_(s, n) {
  return Array.from(s).slice(0, n).join('');
}

/** Trim and fold inner whitespace. @param {string} s @returns {string} */
function squash_(s) {
  return s.split(/\s+/).filter(function (w) { return w !== ''; }).join(' ');
}

// ---------------------------------------------------------------- parsing

var NUMBER_JUNK_ = /[ \t\r\n\u00a0\u2007\u2009\u202f']/g;
var NUMBER_UNIT_ = /(₽|руб\.?|р\.?|rub|м2|м²|кв\.м\.?)$/i;
var NUMBER_SHAPE_ = /^[+-]?[0-9]+(\.[0-9]+)?$/;
var ISO_DATE_ = /^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})([T ].*)?$/;
var RU_DATE_ = /^([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})([ ,].*)?$/;

/** @param {string} s @param {string} ch @returns {number} */
function countChar_(s, ch) {
  return s.split(ch).length - 1;
}

/**
 * A staff-typed number (`5 000 000`, `5000000,00`, `45,5 м²`) or null.
 * @param {*} value @returns {number|null}
 */
function parseNumber(value) {
  if (value === null || value === undefined) return null;
  var s = String(value).replace(NUMBER_JUNK_, '');
  s = s.replace(NUMBER_UNIT_, '');
  var comma = s.lastIndexOf(',');
  var dot = s.lastIndexOf('.');
  if (comma >= 0 && dot >= 0) {
    s = comma > dot ? s.split('.').join('').replace(',', '.') : s.split(',').join('');
  } else if (countChar_(s, ',') === 1) {
    s = s.replace(',', '.');
  } else if (countChar_(s, ',') > 1) {
    s = s.split(',').join('');
  } else if (countChar_(s, '.') > 1) {
    s = s.split('.').join('');
  }
  if (!NUMBER_SHAPE_.test(s)) return null;
  return Number(s);
}

/** @param {number} year @param {number} month @returns {number} */
function daysInMonth_(year, month) {
  if (month === 2) {
    var leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    return leap ? 29 : 28;
  }
  return [4, 6, 9, 11].indexOf(month) >= 0 ? 30 : 31;
}

/** @param {number} y @param {number} m @param {number} d @returns {Day} */
function makeDay_(y, m, d) {
  return {ordinal: Date.UTC(y, m - 1, d) / 86400000, year: y, month: m};
}

/** @param {Day} day @returns {string} */
function dayIso_(day) {
  return new Date(day.ordinal * 86400000).toISOString().slice(0, 10);
}

/** @param {*} value @returns {Day|null} */
function parseDay_(value) {
  if (value === null || value === undefined) return null;
  var s = String(value).trim();
  var y, mo, d;
  var m = ISO_DATE_.exec(s);
  if (m) {
    y = parseInt(m[1], 10); mo = parseInt(m[2], 10); d = parseInt(m[3], 10);
  } else {
    m = RU_DATE_.exec(s);
    if (!m) return null;
    d = parseInt(m[1], 10); mo = parseInt(m[2], 10); y = parseInt(m[3], 10);
  }
  if (!(y >= 1900 && y <= 2100 && mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth_(y, mo))) return null;
  return makeDay_(y, mo, d);
}

/**
 * A staff-typed date as `YYYY-MM-DD`, or null.
 * @param {*} value @returns {string|null}
 */
function parseDate(value) {
  var day = parseDay_(value);
  return day === null ? null : dayIso_(day);
}

/** How type and district are compared. @param {*} value @returns {string} */
function normText(value) {
  if (value === null || value === undefined) return '';
  return squash_(String(value)).toLowerCase().split('ё').join('е');
}

/** Rooms as a whole number 0-20 (`студия` is 0) or null. @param {*} value @returns {number|null} */
function parseRooms(value) {
  var text = normText(value);
  if (text === 'студия' || text === 'студ' || text === 'studio') return 0;
  var n = parseNumber(text);
  if (n === null || n !== Math.floor(n) || !(n >= 0 && n <= 20)) return null;
  return n + 0;
}

/** @param {number|null} area @param {number|null} price @returns {boolean} */
function sane_(area, price) {
  if (area === null || price === null || !(area >= MIN_AREA && area <= MAX_AREA)) return false;
  if (!(price >= MIN_PRICE && price <= MAX_PRICE)) return false;
  var ppm2 = price / area;
  return ppm2 >= MIN_PRICE_PER_M2 && ppm2 <= MAX_PRICE_PER_M2;
}

/**
 * Reads a row by header, tolerating case and stray spaces in the header text.
 * @param {Row} row @returns {function(string): string}
 */
function rowGetter_(row) {
  /** @type {Object<string, *>} */
  var folded = {};
  Object.keys(row).forEach(function (k) {
    folded[squash_(String(k)).toLowerCase()] = row[k];
  });
  return function (name) {
    var value = folded[name];
    return value === null || value === undefined ? '' : String(value);
  };
}

// ---------------------------------------------------------------- statistics

/**
 * Linear interpolation between closest ranks (numpy's default) over ascending values.
 * @param {number[]} sorted @param {number} q @returns {number}
 */
function quantile(sorted, q) {
  var n = sorted.length;
  var pos = (n - 1) * q;
  var lo = Math.floor(pos);
  var hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** @param {number[]} values @returns {number[]} */
function sortedNumbers_(values) {
  return values.slice().sort(function (a, b) { return a - b; });
}

/** @param {number[]} sorted @param {number} x @returns {number} */
function percentileRank_(sorted, x) {
  var below = 0;
  var equal = 0;
  sorted.forEach(function (v) {
    if (v < x) below += 1;
    if (v === x) equal += 1;
  });
  return (below + 0.5 * equal) / sorted.length * 100;
}

/** @param {number[]} sorted @returns {HistogramBin[]} */
function histogram_(sorted) {
  if (!sorted.length) return [];
  var lo = sorted[0];
  var hi = sorted[sorted.length - 1];
  if (lo === hi) return [{low: roundHalfAway(lo), high: roundHalfAway(hi), count: sorted.length}];
  /** @type {number[]} */
  var counts = [];
  for (var i = 0; i < HISTOGRAM_BINS; i++) counts.push(0);
  sorted.forEach(function (v) {
    counts[Math.min(Math.floor((v - lo) / (hi - lo) * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1;
  });
  return counts.map(function (count, j) {
    return {
      low: roundHalfAway(lo + (hi - lo) * j / HISTOGRAM_BINS),
      high: roundHalfAway(lo + (hi - lo) * (j + 1) / HISTOGRAM_BINS),
      count: count,
    };
  });
}

/** @param {number} x @returns {number} */
function roundTarget_(x) {
  return roundHalfAway(x / TARGET_STEP) * TARGET_STEP;
}

// ---------------------------------------------------------------- the analysis

/** @param {string} objectCode @param {Row[]} objects @returns {function(string): string} */
function findObject_(objectCode, objects) {
  var wanted = String(objectCode).trim().toUpperCase();
  var shown = firstChars_(String(objectCode).trim(), 40);
  if (!wanted) throw new ObjectNotFound('Не указан код объекта. Отправьте код, например DEMO-0001.');
  for (var i = 0; i < objects.length; i++) {
    var get = rowGetter_(objects[i]);
    if (get('code').trim().toUpperCase() === wanted) return get;
  }
  throw new ObjectNotFound(
    'Объект с кодом ' + shown + ' не найден в базе агентства. Проверьте код и попробуйте снова.');
}

var FIX_CARD_ = ' — анализ невозможен. Обратитесь к менеджеру, чтобы исправить карточку объекта.';

/**
 * @param {string} code @param {function(string): string} get
 * @returns {{type: string, area: number, price: number}}
 */
function objectFigures_(code, get) {
  var type = normText(get('type'));
  if (!type) {
    throw new InvalidObjectData('У объекта ' + code + ' не указан тип (квартира, апартаменты…)' + FIX_CARD_,
      'type');
  }
  var area = parseNumber(get('area'));
  if (area === null || !(area >= MIN_AREA && area <= MAX_AREA)) {
    throw new InvalidObjectData('У объекта ' + code + ' не указана или некорректна площадь' + FIX_CARD_,
      'area');
  }
  var price = parseNumber(get('price'));
  if (price === null || !sane_(area, price)) {
    throw new InvalidObjectData('У объекта ' + code + ' не указана или некорректна цена' + FIX_CARD_,
      'price');
  }
  return {type: type, area: area, price: price};
}

/** @param {Row} row @param {Day} today @returns {Listing|null} */
function parseListing_(row, today) {
  var get = rowGetter_(row);
  var type = normText(get('type'));
  var area = parseNumber(get('area'));
  var price = parseNumber(get('price'));
  if (!type || area === null || price === null || !sane_(area, price)) return null;
  var listed = parseDay_(get('listed_at'));
  if (listed !== null && listed.ordinal > today.ordinal) listed = null;
  var removed = parseDay_(get('removed_at'));
  if (removed !== null &&
      (removed.ordinal > today.ordinal || (listed !== null && removed.ordinal < listed.ordinal))) {
    removed = null;
  }
  return {
    type: type, district: normText(get('district')), rooms: parseRooms(get('rooms')),
    area: area, price: price, ppm2: price / area, listed: listed, removed: removed,
  };
}

/** @param {Listing} listing @param {CriteriaLevel} level @param {Listing} obj @returns {boolean} */
function matches_(listing, level, obj) {
  if (listing.type !== obj.type) return false;
  if (level.same_district && (!obj.district || listing.district !== obj.district)) return false;
  if (level.same_rooms && (obj.rooms === null || listing.rooms !== obj.rooms)) return false;
  return obj.area * level.area_low <= listing.area && listing.area <= obj.area * level.area_high;
}

/** @param {CriteriaLevel} level @param {number} count @returns {string|null} */
function criteriaNote_(level, count) {
  if (count === 0) return 'Сравнимых объявлений не найдено даже по самым широким критериям.';
  if (count < MIN_COMPARABLES) {
    return 'Даже по самым широким критериям найдено только ' + count + ' ' +
      plural(count, 'сравнимое объявление', 'сравнимых объявления', 'сравнимых объявлений') +
      ' — выводы ориентировочные.';
  }
  if (level.level > 1) {
    return 'По строгим критериям меньше ' + MIN_COMPARABLES + ' сравнимых объявлений, ' +
      'поэтому критерии расширены: ' + level.description + '.';
  }
  return null;
}

/** @param {number} n @param {number} width @returns {string} */
function pad_(n, width) {
  var s = String(n);
  while (s.length < width) s = '0' + s;
  return s;
}

/**
 * @param {Listing[]} comparables @param {Day} today
 * @returns {{points: TrendPoint[], change: number|null}}
 */
function trend_(comparables, today) {
  var firstIndex = today.year * 12 + today.month - 1 - (TREND_MONTHS - 1);
  /** @type {number[][]} */
  var buckets = [];
  for (var i = 0; i < TREND_MONTHS; i++) buckets.push([]);
  comparables.forEach(function (c) {
    if (c.listed === null) return;
    var k = c.listed.year * 12 + c.listed.month - 1 - firstIndex;
    if (k >= 0 && k < TREND_MONTHS) buckets[k].push(c.ppm2);
  });
  /** @type {TrendPoint[]} */
  var points = [];
  /** @type {number[]} */
  var raw = [];
  buckets.forEach(function (bucket, j) {
    var index = firstIndex + j;
    var month = pad_(Math.floor(index / 12), 4) + '-' + pad_(index % 12 + 1, 2);
    if (bucket.length >= MIN_TREND_COUNT) {
      var median = quantile(sortedNumbers_(bucket), 0.5);
      raw.push(median);
      points.push({month: month, median_ppm2: roundHalfAway(median), count: bucket.length});
    } else {
      points.push({month: month, median_ppm2: null, count: bucket.length});
    }
  });
  var change = raw.length >= 2 ? round1((raw[raw.length - 1] - raw[0]) / raw[0] * 100) : null;
  return {points: points, change: change};
}

/** @param {Listing[]} comparables @param {Day} today @returns {number|null} */
function daysOnMarket_(comparables, today) {
  /** @type {number[]} */
  var days = [];
  comparables.forEach(function (c) {
    if (c.listed !== null) days.push((c.removed ? c.removed.ordinal : today.ordinal) - c.listed.ordinal);
  });
  return days.length ? quantile(sortedNumbers_(days), 0.5) : null;
}

/**
 * @param {{n: number, ppm2: number, q1: number, median: number, q3: number, percentile: number,
 *   area: number, objectDays: number|null, typicalDays: number|null, trendChange: number|null}} s
 * @returns {{kind: string, low: number|null, high: number|null, reasons: string[]}}
 */
function recommend_(s) {
  if (s.n === 0) {
    return {kind: 'insufficient', low: null, high: null, reasons: [
      'Сравнимых объявлений не найдено даже по самым широким критериям — ' +
      'рекомендацию по цене дать нельзя.']};
  }
  if (s.n < MIN_FOR_RECOMMENDATION) {
    var noun = plural(s.n, 'сравнимое объявление', 'сравнимых объявления', 'сравнимых объявлений');
    return {kind: 'insufficient', low: null, high: null, reasons: [
      'Найдено только ' + s.n + ' ' + noun + ' — этого мало для надёжной рекомендации ' +
      '(нужно не меньше ' + MIN_FOR_RECOMMENDATION + ').']};
  }
  var ppm2 = roundHalfAway(s.ppm2);
  var q1 = roundHalfAway(s.q1);
  var med = roundHalfAway(s.median);
  var q3 = roundHalfAway(s.q3);
  var pct = fmtDec(round1(s.percentile));
  var typical = s.typicalDays !== null ? roundHalfAway(s.typicalDays) : null;
  var slow = s.objectDays !== null && s.typicalDays !== null && s.objectDays > SLOW_SALE_FACTOR * s.typicalDays;
  /** @type {string[]} */
  var reasons = [];
  var daysMentioned = false;
  var kind, low, high;
  if (s.ppm2 > s.q3) {
    kind = 'lower'; low = s.median; high = s.q3;
    reasons.push('Цена за м² (' + fmtRub(ppm2) + '/м²) выше верхнего квартиля рынка (' + fmtRub(q3) +
      '/м²): объект дороже ' + pct + '% сравнимых предложений.');
    reasons.push('Целевой диапазон — между медианой и верхним квартилем цены за м² конкурентов.');
  } else if (s.ppm2 < s.q1) {
    kind = 'raise'; low = s.q1; high = s.median;
    reasons.push('Цена за м² (' + fmtRub(ppm2) + '/м²) ниже нижнего квартиля рынка (' + fmtRub(q1) +
      '/м²): объект дороже лишь ' + pct + '% сравнимых предложений.');
    reasons.push('Целевой диапазон — между нижним квартилем и медианой цены за м² конкурентов.');
  } else if (s.ppm2 > s.median && slow) {
    kind = 'lower'; low = s.q1; high = s.median;
    reasons.push('Цена за м² (' + fmtRub(ppm2) + '/м²) в межквартильном диапазоне рынка, но выше медианы (' +
      fmtRub(med) + '/м²), а объект в продаже уже ' + s.objectDays + ' дн. — заметно дольше типичного срока ' +
      typical + ' дн.');
    reasons.push('Снижение к диапазону от нижнего квартиля до медианы цены за м² ускорит продажу.');
    daysMentioned = true;
  } else {
    kind = 'keep'; low = s.q1; high = s.q3;
    reasons.push('Цена за м² (' + fmtRub(ppm2) + '/м²) в межквартильном диапазоне рынка (' + fmtInt(q1) +
      ' – ' + fmtRub(q3) + '/м²): объект дороже ' + pct + '% сравнимых предложений.');
    reasons.push('Рыночный диапазон — от нижнего до верхнего квартиля цены за м² конкурентов.');
  }
  if (s.trendChange !== null) {
    if (s.trendChange >= TREND_NOTABLE_PCT) {
      reasons.push('Медианная цена м² сравнимых объявлений за ' + TREND_MONTHS + ' мес. выросла на ' +
        fmtDec(s.trendChange) + '% — рынок растёт.');
    } else if (s.trendChange <= -TREND_NOTABLE_PCT) {
      reasons.push('Медианная цена м² сравнимых объявлений за ' + TREND_MONTHS + ' мес. снизилась на ' +
        fmtDec(-s.trendChange) + '% — затягивать с продажей рискованно.');
    } else {
      reasons.push('За ' + TREND_MONTHS + ' мес. медианная цена м² почти не изменилась (' +
        fmtSignedPct(s.trendChange) + ').');
    }
  }
  if (s.objectDays !== null && typical !== null && !daysMentioned) {
    reasons.push('Объект в продаже ' + s.objectDays + ' дн. при типичном сроке экспозиции ' + typical + ' дн.');
  }
  if (s.n < MIN_COMPARABLES) {
    reasons.push('Сравнимых объявлений немного (' + s.n + '), поэтому выводы ориентировочные.');
  }
  return {kind: kind, low: roundTarget_(low * s.area), high: roundTarget_(high * s.area), reasons: reasons};
}

/**
 * Analyze the agency object `objectCode` against the market listings as of `today` (`YYYY-MM-DD`).
 * @param {string} objectCode @param {Row[]} objects @param {Row[]} market @param {string} today
 * @returns {Report}
 */
function analyze(objectCode, objects, market, today) {
  var todayDay = parseDay_(today);
  if (todayDay === null) throw new Error('today must be YYYY-MM-DD, got ' + today);
  var get = findObject_(objectCode, objects);
  var code = get('code').trim();
  var figures = objectFigures_(code, get);
  var objListed = parseDay_(get('listed_at'));
  if (objListed !== null && objListed.ordinal > todayDay.ordinal) objListed = null;
  /** @type {Listing} */
  var obj = {
    type: figures.type, district: normText(get('district')), rooms: parseRooms(get('rooms')),
    area: figures.area, price: figures.price, ppm2: figures.price / figures.area, listed: objListed,
    removed: null,
  };

  var usable = [];
  for (var i = 0; i < market.length; i++) {
    var listing = parseListing_(market[i], todayDay);
    if (listing !== null) usable.push(listing);
  }
  var cutoff = todayDay.ordinal - RECENT_DAYS;
  var pool = usable.filter(function (x) {
    return x.type === obj.type && (x.removed === null || x.removed.ordinal >= cutoff);
  });

  var level = LADDER[LADDER.length - 1];
  /** @type {Listing[]} */
  var comparables = [];
  for (var j = 0; j < LADDER.length; j++) {
    var candidate = LADDER[j];
    var found = pool.filter(function (x) { return matches_(x, candidate, obj); });
    level = candidate;
    comparables = found;
    if (found.length >= MIN_COMPARABLES) break;
  }

  var values = sortedNumbers_(comparables.map(function (c) { return c.ppm2; }));
  var n = values.length;
  var trend = trend_(comparables, todayDay);
  var typicalDays = daysOnMarket_(comparables, todayDay);
  var objectDays = objListed !== null ? todayDay.ordinal - objListed.ordinal : null;
  var q1 = NaN, median = NaN, q3 = NaN, percentile = NaN, medianPrice = null;
  if (n) {
    q1 = quantile(values, 0.25);
    median = quantile(values, 0.5);
    q3 = quantile(values, 0.75);
    percentile = percentileRank_(values, obj.ppm2);
    medianPrice = roundHalfAway(quantile(sortedNumbers_(comparables.map(function (c) { return c.price; })), 0.5));
  }
  var rec = recommend_({
    n: n, ppm2: obj.ppm2, q1: q1, median: median, q3: q3, percentile: percentile, area: figures.area,
    objectDays: objectDays, typicalDays: typicalDays, trendChange: trend.change,
  });
  /** @param {number} x @returns {number|null} */
  function whole(x) { return n ? roundHalfAway(x) : null; }

  return {
    object_code: code,
    object_type: squash_(get('type')),
    district: squash_(get('district')),
    address: firstChars_(squash_(get('address')), 200),
    status: squash_(get('status')),
    rooms: obj.rooms,
    area: round1(figures.area),
    price: roundHalfAway(figures.price),
    price_per_m2: roundHalfAway(obj.ppm2),
    listed_at: objListed !== null ? dayIso_(objListed) : null,
    days_on_market: objectDays,
    today: dayIso_(todayDay),
    criteria_level: level.level,
    criteria: level.description,
    same_district: level.same_district,
    same_rooms: level.same_rooms,
    area_tolerance_pct: level.area_tolerance_pct,
    criteria_note: criteriaNote_(level, n),
    comparables_count: n,
    market_listings: usable.length,
    invalid_listings: market.length - usable.length,
    median_ppm2: whole(median),
    q1_ppm2: whole(q1),
    q3_ppm2: whole(q3),
    min_ppm2: n ? roundHalfAway(values[0]) : null,
    max_ppm2: n ? roundHalfAway(values[n - 1]) : null,
    median_price: medianPrice,
    price_percentile: n ? round1(percentile) : null,
    diff_from_median_pct: n ? round1((obj.ppm2 - median) / median * 100) : null,
    trend: trend.points,
    trend_change_pct: trend.change,
    typical_days_on_market: typicalDays !== null ? roundHalfAway(typicalDays) : null,
    sold_count: comparables.filter(function (c) { return c.removed !== null; }).length,
    histogram: histogram_(values),
    recommendation: rec.kind,
    target_price_low: rec.low,
    target_price_high: rec.high,
    reasoning: rec.reasons,
  };
}

// ---------------------------------------------------------------- texts

/** @param {number|null} rooms @returns {string} */
function roomsLabel_(rooms) {
  if (rooms === null) return 'комнат: н/д';
  return rooms === 0 ? 'студия' : rooms + ' комн.';
}

/** @param {string} text @returns {string} */
function capitalized_(text) {
  return text.slice(0, 1).toUpperCase() + text.slice(1);
}

/** @param {Report} report @returns {string} */
function trendLine_(report) {
  var points = report.trend.filter(function (p) { return p.median_ppm2 !== null; });
  if (report.trend_change_pct === null || points.length < 2) {
    return '• Тренд медианы за ' + TREND_MONTHS + ' мес.: недостаточно данных';
  }
  return '• Тренд медианы за ' + TREND_MONTHS + ' мес.: ' + fmtSignedPct(report.trend_change_pct) + ' (' +
    monthLabel(points[0].month) + ' → ' + monthLabel(points[points.length - 1].month) + ')';
}

/** `снизить цену до 35 300 000 – 39 600 000 ₽` and the like. @param {Report} report @returns {string} */
function recommendationLine(report) {
  var low = report.target_price_low;
  var high = report.target_price_high;
  var labels = /** @type {Object<string, string>} */ (RECOMMENDATION_LABELS);
  if (low === null || high === null) return labels[report.recommendation];
  var span = fmtInt(low) + ' – ' + fmtRub(high);
  if (report.recommendation === 'keep') return 'сохранить цену (рыночный диапазон ' + span + ')';
  if (report.recommendation === 'raise') return 'можно поднять цену до ' + span;
  return 'снизить цену до ' + span;
}

/**
 * The Russian summary for one Telegram message; uses `narrative` only if its numbers check out.
 * @param {Report} report @param {string|null} [narrative] @returns {string}
 */
function renderSummary(report, narrative) {
  var n = report.comparables_count;
  var lines = [
    '📊 Аналитика 360 · ' + report.object_code,
    [capitalized_(report.object_type), roomsLabel_(report.rooms), fmtDec(report.area) + NBSP_ + 'м²',
      report.district].filter(function (p) { return p; }).join(' · '),
  ];
  if (report.address) lines.push(report.address);
  lines.push('Цена: ' + fmtRub(report.price) + ' — ' + fmtRub(report.price_per_m2) + '/м²');
  if (report.days_on_market !== null) lines.push('В продаже: ' + report.days_on_market + ' дн.');
  lines.push('');
  var noun = plural(n, 'сравнимое объявление', 'сравнимых объявления', 'сравнимых объявлений');
  lines.push('Рынок: ' + n + ' ' + noun + ' (' + report.criteria + ')');
  if (n && report.median_ppm2 !== null && report.q1_ppm2 !== null && report.q3_ppm2 !== null) {
    lines.push('• Медиана: ' + fmtRub(report.median_ppm2) + '/м²; квартили: ' + fmtInt(report.q1_ppm2) +
      ' – ' + fmtRub(report.q3_ppm2) + '/м²');
    if (report.diff_from_median_pct !== null && report.price_percentile !== null) {
      lines.push('• Объект: ' + fmtSignedPct(report.diff_from_median_pct) + ' к медиане; дороже ' +
        fmtDec(report.price_percentile) + '% конкурентов');
    }
    lines.push(trendLine_(report));
    var days = report.typical_days_on_market;
    lines.push(days !== null ? '• Типичный срок экспозиции: ' + days + ' дн.' :
      '• Типичный срок экспозиции: нет данных о датах');
  }
  lines.push('');
  lines.push('Рекомендация: ' + recommendationLine(report));
  if (narrative !== null && narrative !== undefined && usableNarrative(narrative, report)) {
    lines.push(squash_(narrative));
  } else {
    report.reasoning.forEach(function (r) { lines.push(r); });
  }
  lines.push('');
  if (report.criteria_note) lines.push('Примечание: ' + report.criteria_note);
  lines.push('Расчёт на ' + fmtDateRu(report.today) + ' по ' + fmtInt(report.market_listings) + ' ' +
    plural(report.market_listings, 'объявлению', 'объявлениям', 'объявлениям') + ' рынка.');
  return lines.join('\n');
}

/** The labelled figures an AI narrative may use. @param {Report} report @returns {string[][]} */
function figuresForNarrative(report) {
  var rows = [
    ['Объект', report.object_code + ', ' + report.object_type + ', ' + roomsLabel_(report.rooms) + ', ' +
      fmtDec(report.area) + ' м², район ' + (report.district || 'н/д')],
    ['Цена', fmtRub(report.price)],
    ['Цена за м²', fmtRub(report.price_per_m2) + '/м²'],
    ['Сравнимых объявлений', String(report.comparables_count)],
    ['Критерии', report.criteria],
  ];
  if (report.days_on_market !== null) rows.push(['Объект в продаже, дней', String(report.days_on_market)]);
  if (report.median_ppm2 !== null && report.q1_ppm2 !== null && report.q3_ppm2 !== null) {
    rows.push(['Медиана цены за м²', fmtRub(report.median_ppm2) + '/м²']);
    rows.push(['Нижний квартиль (25%) цены за м²', fmtRub(report.q1_ppm2) + '/м²']);
    rows.push(['Верхний квартиль (75%) цены за м²', fmtRub(report.q3_ppm2) + '/м²']);
  }
  if (report.price_percentile !== null) {
    rows.push(['Объект дороже такой доли конкурентов', fmtDec(report.price_percentile) + '%']);
  }
  if (report.diff_from_median_pct !== null) {
    rows.push(['Отклонение от медианы', fmtSignedPct(report.diff_from_median_pct)]);
  }
  if (report.trend_change_pct !== null) {
    rows.push(['Изменение медианы за ' + TREND_MONTHS + ' мес.', fmtSignedPct(report.trend_change_pct)]);
  }
  if (report.typical_days_on_market !== null) {
    rows.push(['Типичный срок экспозиции, дней', String(report.typical_days_on_market)]);
  }
  var labels = /** @type {Object<string, string>} */ (RECOMMENDATION_LABELS);
  rows.push(['Рекомендация', labels[report.recommendation]]);
  if (report.target_price_low !== null && report.target_price_high !== null) {
    rows.push(['Целевой диапазон цены', fmtRub(report.target_price_low) + ' – ' + fmtRub(report.target_price_high)]);
  }
  return rows;
}

/** The instruction for the AI narrative: the computed figures and nothing else. @param {Report} report */
function narrativePrompt(report) {
  var figures = figuresForNarrative(report).map(function (r) { return '- ' + r[0] + ': ' + r[1]; }).join('\n');
  return 'Ты аналитик агентства недвижимости. Напиши один абзац (3–5 предложений) на русском языке ' +
    'для партнёра агентства: оценка цены объекта относительно рынка и рекомендация. ' +
    'Используй только числа из списка ниже, в том же виде; не придумывай новых чисел, дат и ' +
    'процентов, не пересчитывай и не округляй их. Без заголовков, списков и разметки.\n\n' +
    'Данные анализа:\n' + figures;
}

var NUMBER_TOKEN_ = new RegExp(
  '(?<![0-9A-Za-zА-Яа-яЁё_])' +
  '([0-9]{1,3}(?:[ \\u00a0\\u202f\\u2009][0-9]{3})+|[0-9]+)' +
  '(?:[.,]([0-9]+))?' +
  '(?:[ \\u00a0]?(млрд|млн|тыс)\\.?)?', 'g');
// `9,6–10,9 млн`: the unit after a range's second number applies to the first one too.
var RANGE_TAIL_ = new RegExp(
  '[ \\u00a0]*[-–—][ \\u00a0]*[0-9]{1,3}(?:[ \\u00a0\\u202f\\u2009][0-9]{3})*(?:[.,][0-9]+)?[ \\u00a0]?(млрд|млн|тыс)', 'y');
/** @type {Object<string, number>} */
var MULTIPLIERS_ = {'млрд': 1e9, 'млн': 1e6, 'тыс': 1e3};

/** @param {Report} report @returns {number[]} */
function allowedNumbers_(report) {
  /** @type {Array<number|null>} */
  var values = [
    report.price, report.price_per_m2, report.area, report.rooms, report.days_on_market,
    report.comparables_count, report.market_listings, report.median_ppm2, report.q1_ppm2,
    report.q3_ppm2, report.min_ppm2, report.max_ppm2, report.median_price, report.price_percentile,
    report.diff_from_median_pct, report.trend_change_pct, report.typical_days_on_market,
    report.sold_count, report.target_price_low, report.target_price_high, report.area_tolerance_pct,
    MIN_COMPARABLES, TREND_MONTHS, 25, 50, 75, parseInt(report.today.slice(0, 4), 10),
  ];
  if (report.price_percentile !== null) values.push(100 - report.price_percentile);
  report.trend.forEach(function (p) {
    values.push(p.median_ppm2);
    values.push(parseInt(p.month.slice(0, 4), 10));
  });
  /** @type {number[]} */
  var allowed = [];
  values.forEach(function (v) { if (v !== null) allowed.push(Math.abs(v)); });
  return allowed;
}

/**
 * True when every number in `text` is one of the report's figures (as written, within rounding).
 * @param {string} text @param {Report} report @returns {boolean}
 */
function narrativeNumbersOk(text, report) {
  if (!text.trim()) return false;
  [report.today, report.listed_at].forEach(function (day) {
    if (day) text = text.split(day).join(' ').split(fmtDateRu(day)).join(' ');
  });
  var allowed = allowedNumbers_(report);
  NUMBER_TOKEN_.lastIndex = 0;
  var m;
  while ((m = NUMBER_TOKEN_.exec(text)) !== null) {
    var frac = m[2];
    /** @type {string|undefined} */
    var unit = m[3];
    if (!unit) {
      RANGE_TAIL_.lastIndex = m.index + m[0].length;
      var tail = RANGE_TAIL_.exec(text);
      unit = tail ? tail[1] : undefined;
    }
    var value = Number(m[1].replace(NUMBER_JUNK_, '') + (frac ? '.' + frac : ''));
    var scale = unit ? MULTIPLIERS_[unit] : 1.0;
    value *= scale;
    var tolerance = scale * 0.5 * Math.pow(10.0, -(frac ? frac.length : 0));
    var v = value;
    var ok = allowed.some(function (a) { return Math.abs(v - a) <= tolerance + 1e-9 * Math.max(1.0, a); });
    if (!ok) return false;
  }
  return true;
}

/**
 * An AI narrative may replace the template reasoning: short enough and every number checks out.
 * @param {string} text @param {Report} report @returns {boolean}
 */
function usableNarrative(text, report) {
  return Array.from(text).length <= NARRATIVE_MAX_CHARS && narrativeNumbersOk(text, report);
}

if (typeof module !== 'undefined') {
  /** @type {any} */ (module).exports = {
    MIN_COMPARABLES: MIN_COMPARABLES, LADDER: LADDER, SUMMARY_MAX_CHARS: SUMMARY_MAX_CHARS,
    AnalysisError: AnalysisError, ObjectNotFound: ObjectNotFound, InvalidObjectData: InvalidObjectData,
    analyze: analyze, renderSummary: renderSummary, recommendationLine: recommendationLine,
    narrativePrompt: narrativePrompt, narrativeNumbersOk: narrativeNumbersOk, usableNarrative: usableNarrative,
    figuresForNarrative: figuresForNarrative, parseNumber: parseNumber, parseDate: parseDate,
    parseRooms: parseRooms, normText: normText, quantile: quantile, roundHalfAway: roundHalfAway,
    round1: round1, fmtInt: fmtInt, fmtDec: fmtDec, fmtRub: fmtRub, fmtSignedPct: fmtSignedPct,
    plural: plural, monthLabel: monthLabel,
  };
}
