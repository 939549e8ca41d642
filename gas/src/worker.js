/**
 * The Аналитика 360 queue worker (Apps Script, V8).
 *
 * A time-driven trigger runs processQueue() every minute. Under the script lock it claims a bounded
 * batch of NEW rows of «Очередь» (→ PROCESSING, started_at, attempts + 1), releases the lock, computes
 * each report (analysis.js), saves the PDF in Drive (private) and writes DONE (result_text, pdf_url,
 * finished_at) or ERROR (error, finished_at); both clear delivered_at, so a row staff set back to NEW is
 * delivered again by the bot. Unexpected failures go back to NEW until the attempt limit; a row left
 * in PROCESSING by a run that died is claimed again once it is stale. Columns are found by header text.
 *
 * Apps Script services are reached only through appsScriptServices(), so Node tests stub them.
 */

var QUEUE_SHEET = 'Очередь';
var OBJECTS_SHEET = 'Объекты';
var MARKET_SHEET = 'Рынок';
var PDF_FOLDER_NAME = 'Аналитика 360 — отчёты';
var DEFAULT_GEMINI_MODEL = 'gemini-2.5-flash';
var DEFAULT_GEMINI_BASE_URL = 'https://generativelanguage.googleapis.com';
var MOSCOW_OFFSET_MS = 3 * 60 * 60 * 1000; // Europe/Moscow is UTC+3 all year (no DST since 2014)

var QUEUE_COLUMNS = ['id', 'object_code', 'status', 'started_at', 'finished_at', 'pdf_url', 'error',
  'result_text', 'delivered_at', 'attempts'];

/**
 * @typedef {{batchSize: number, maxAttempts: number, maxRuntimeMs: number, lockWaitMs: number,
 *   staleMs: number}} WorkerOptions
 * @typedef {{
 *   spreadsheet: function(): GoogleAppsScript.Spreadsheet.Spreadsheet,
 *   lock: function(): GoogleAppsScript.Lock.Lock,
 *   properties: function(): GoogleAppsScript.Properties.Properties,
 *   now: function(): Date,
 *   flush: function(): void,
 *   savePdf: function(Report, string|null, string): string,
 *   fetch: function(string, GoogleAppsScript.URL_Fetch.URLFetchRequestOptions):
 *     GoogleAppsScript.URL_Fetch.HTTPResponse,
 *   log: function(string): void
 * }} WorkerServices
 * @typedef {{id: string, code: string, attempts: number, startedAt: string}} Claim
 * @typedef {{claimed: number, done: number, failed: number, retried: number, released: number,
 *   lost: number, skipped: boolean}} RunResult
 */

/** @type {WorkerOptions} */
var WORKER_DEFAULTS = {
  batchSize: 10,
  maxAttempts: 3,
  maxRuntimeMs: 4.5 * 60 * 1000, // Apps Script stops a run at 6 minutes; stop taking work well before
  lockWaitMs: 10 * 1000,
  staleMs: 15 * 60 * 1000,
};

/** Installs the every-minute trigger for processQueue once; returns true when it created one. */
function installTrigger() {
  var exists = ScriptApp.getProjectTriggers().some(function (t) {
    return t.getHandlerFunction() === 'processQueue';
  });
  if (exists) return false;
  ScriptApp.newTrigger('processQueue').timeBased().everyMinutes(1).create();
  return true;
}

/** The trigger's entry point (the trigger passes an event object, which is ignored). */
function processQueue() {
  var services = appsScriptServices();
  return runQueue(services, workerOptions_(services.properties()));
}

/**
 * Options from Script Properties (BATCH_SIZE, MAX_ATTEMPTS), else the defaults.
 * @param {GoogleAppsScript.Properties.Properties} props @returns {WorkerOptions}
 */
function workerOptions_(props) {
  /** @param {string} name @param {number} fallback */
  function positive(name, fallback) {
    var value = parseInt(props.getProperty(name) || '', 10);
    return value > 0 ? value : fallback;
  }
  return {
    batchSize: positive('BATCH_SIZE', WORKER_DEFAULTS.batchSize),
    maxAttempts: positive('MAX_ATTEMPTS', WORKER_DEFAULTS.maxAttempts),
    maxRuntimeMs: WORKER_DEFAULTS.maxRuntimeMs,
    lockWaitMs: WORKER_DEFAULTS.lockWaitMs,
    staleMs: WORKER_DEFAULTS.staleMs,
  };
}

/** The real Apps Script services. @returns {WorkerServices} */
function appsScriptServices() {
  var services = {
    spreadsheet: function () {
      var id = PropertiesService.getScriptProperties().getProperty('SPREADSHEET_ID');
      return id ? SpreadsheetApp.openById(id) : SpreadsheetApp.getActiveSpreadsheet();
    },
    lock: function () { return LockService.getScriptLock(); },
    properties: function () { return PropertiesService.getScriptProperties(); },
    now: function () { return new Date(); },
    flush: function () { SpreadsheetApp.flush(); },
    /** @param {Report} report @param {string|null} narrative @param {string} requestId */
    savePdf: function (report, narrative, requestId) {
      return savePdfToDrive_(report, narrative, requestId, PropertiesService.getScriptProperties());
    },
    /** @param {string} url @param {GoogleAppsScript.URL_Fetch.URLFetchRequestOptions} params */
    fetch: function (url, params) { return UrlFetchApp.fetch(url, params); },
    /** @param {string} message */
    log: function (message) { console.log(message); },
  };
  return services;
}

// ---------------------------------------------------------------- time

/**
 * How times are written for staff (the bot's format): `2026-11-24 18:02:03`, Moscow time.
 * @param {Date} date @returns {string}
 */
function moscowStamp(date) {
  return new Date(date.getTime() + MOSCOW_OFFSET_MS).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * started_at of a claim, which is also its ownership token: `2026-11-24T18:02:03.482+03:00`.
 * It looks like a date to Sheets, so it is only ever written through writeCells_ (plain-text cells).
 * @param {Date} date @returns {string}
 */
function claimStamp(date) {
  return new Date(date.getTime() + MOSCOW_OFFSET_MS).toISOString().slice(0, 23) + '+03:00';
}

/** Today's date in Moscow as `YYYY-MM-DD`. @param {Date} date @returns {string} */
function moscowDate(date) {
  return new Date(date.getTime() + MOSCOW_OFFSET_MS).toISOString().slice(0, 10);
}

// ---------------------------------------------------------------- sheet access

/**
 * Column numbers (1-based) by normalized header text.
 * @param {Array<*>} headerRow @returns {Object<string, number>}
 */
function headerIndex_(headerRow) {
  /** @type {Object<string, number>} */
  var index = {};
  headerRow.forEach(function (h, i) {
    var key = squash_(String(h)).toLowerCase();
    if (key && !(key in index)) index[key] = i + 1;
  });
  return index;
}

/**
 * Rows of a sheet as objects header → displayed string (how staff typed them).
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} book @param {string} name
 * @returns {Array<Object<string, string>>}
 */
function readRows_(book, name) {
  var sheet = book.getSheetByName(name);
  if (!sheet) throw new Error('Нет листа «' + name + '»');
  var values = sheet.getDataRange().getDisplayValues();
  if (!values.length) return [];
  var headers = values[0].map(function (h) { return squash_(String(h)).toLowerCase(); });
  return values.slice(1).map(function (row) {
    /** @type {Object<string, string>} */
    var record = {};
    headers.forEach(function (h, i) { if (h && !(h in record)) record[h] = String(row[i]); });
    return record;
  });
}

/** @param {GoogleAppsScript.Spreadsheet.Spreadsheet} book */
function queueSheet_(book) {
  var sheet = book.getSheetByName(QUEUE_SHEET);
  if (!sheet) throw new Error('Нет листа «' + QUEUE_SHEET + '»');
  var values = sheet.getDataRange().getDisplayValues();
  var cols = headerIndex_(values[0] || []);
  var missing = QUEUE_COLUMNS.filter(function (c) { return !(c in cols); });
  if (missing.length) throw new Error('В листе «' + QUEUE_SHEET + '» нет колонок: ' + missing.join(', '));
  return {sheet: sheet, values: values, cols: cols};
}

/**
 * Writes `updates` (header → text) into one row; contiguous columns go in one call.
 *
 * Range.setValues parses strings the way typed input is parsed: `2026-11-24T18:02:03.482+03:00` or
 * `2026-11-24 18:02:03` would be stored as a date-time, read back as a Date by getValues and as
 * `24.11.2026 18:02:03` (the spreadsheet locale's format, milliseconds gone) by getDisplayValues. The
 * claim token in started_at would then never equal itself and every claim would look foreign; in a US
 * locale finished_at would read `11/24/2026 …`, which the bot's parse_stamp cannot read. So each range is
 * formatted as plain text ('@') BEFORE the values are set: text cells keep the string exactly.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet @param {number} rowNumber
 * @param {Object<string, number>} cols @param {Object<string, string>} updates
 */
function writeCells_(sheet, rowNumber, cols, updates) {
  var items = Object.keys(updates).map(function (name) { return {col: cols[name], value: updates[name]}; })
    .sort(function (a, b) { return a.col - b.col; });
  var i = 0;
  while (i < items.length) {
    var j = i;
    while (j + 1 < items.length && items[j + 1].col === items[j].col + 1) j++;
    var run = items.slice(i, j + 1);
    var range = sheet.getRange(rowNumber, run[0].col, 1, run.length);
    range.setNumberFormat('@');
    range.setValues([run.map(function (item) { return item.value; })]);
    i = j + 1;
  }
}

// ---------------------------------------------------------------- claiming

/**
 * Claims up to `options.batchSize` rows under the script lock. Returns null when the lock is busy.
 * @param {WorkerServices} services @param {WorkerOptions} options @returns {Claim[]|null}
 */
function claimBatch(services, options) {
  var lock = services.lock();
  if (!lock.tryLock(options.lockWaitMs)) return null;
  try {
    var q = queueSheet_(services.spreadsheet());
    var now = services.now();
    var startedAt = claimStamp(now);
    /** @type {Claim[]} */
    var claims = [];
    for (var r = 1; r < q.values.length && claims.length < options.batchSize; r++) {
      var row = q.values[r];
      /** @param {string} name */
      var cell = function (name) { return String(row[q.cols[name] - 1]).trim(); };
      var status = cell('status').toUpperCase();
      var attempts = parseInt(cell('attempts'), 10) || 0;
      if (status === 'PROCESSING') {
        var started = Date.parse(cell('started_at'));
        if (!isNaN(started) && now.getTime() - started < options.staleMs) continue;
        if (attempts >= options.maxAttempts) {
          writeCells_(q.sheet, r + 1, q.cols, finalUpdates_('ERROR',
            'Отчёт не удалось подготовить за ' + attempts + ' ' +
              plural(attempts, 'попытку', 'попытки', 'попыток') + '. Попробуйте запросить его ещё раз позже.',
            moscowStamp(now)));
          continue;
        }
      } else if (status !== 'NEW') {
        continue;
      }
      if (!cell('id')) continue;
      writeCells_(q.sheet, r + 1, q.cols, {status: 'PROCESSING', started_at: startedAt, attempts: String(attempts + 1)});
      claims.push({id: cell('id'), code: cell('object_code'), attempts: attempts + 1, startedAt: startedAt});
    }
    services.flush();
    return claims;
  } finally {
    lock.releaseLock();
  }
}

/**
 * Writes the outcome of a claimed row, under the lock, only if this run still owns it (the row is
 * found by id, since staff may have moved rows; a stale row re-claimed by another run is left alone).
 * Ownership compares displayed text with the token: started_at was written as plain text (writeCells_),
 * so the displayed value is exactly the string written, whatever the spreadsheet's locale.
 * @param {WorkerServices} services @param {WorkerOptions} options @param {Claim} claim
 * @param {Object<string, string>} updates @returns {boolean} whether the row was written
 */
function finishClaim(services, options, claim, updates) {
  var lock = services.lock();
  if (!lock.tryLock(options.lockWaitMs)) throw new Error('script lock busy');
  try {
    var q = queueSheet_(services.spreadsheet());
    for (var r = 1; r < q.values.length; r++) {
      var row = q.values[r];
      if (String(row[q.cols.id - 1]).trim() !== claim.id) continue;
      var owned = String(row[q.cols.status - 1]).trim().toUpperCase() === 'PROCESSING' &&
        String(row[q.cols.started_at - 1]).trim() === claim.startedAt;
      if (!owned) return false;
      writeCells_(q.sheet, r + 1, q.cols, updates);
      services.flush();
      return true;
    }
    return false;
  } finally {
    lock.releaseLock();
  }
}

// ---------------------------------------------------------------- computing

/**
 * An AI paragraph from Gemini, or null (no key, HTTP error, or a number that is not a computed figure).
 * @param {WorkerServices} services @param {Report} report @returns {string|null}
 */
function geminiNarrative(services, report) {
  var props = services.properties();
  var key = props.getProperty('GEMINI_API_KEY');
  if (!key) return null;
  var model = props.getProperty('GEMINI_ANALYSIS_MODEL') || DEFAULT_GEMINI_MODEL;
  var base = (props.getProperty('GEMINI_BASE_URL') || DEFAULT_GEMINI_BASE_URL).replace(/\/+$/, '');
  try {
    var response = services.fetch(base + '/v1beta/models/' + encodeURIComponent(model) + ':generateContent', {
      method: 'post',
      contentType: 'application/json',
      headers: {'x-goog-api-key': key},
      payload: JSON.stringify({
        contents: [{role: 'user', parts: [{text: narrativePrompt(report)}]}],
        generationConfig: {temperature: 0.2, maxOutputTokens: 800},
      }),
      muteHttpExceptions: true,
    });
    if (response.getResponseCode() !== 200) {
      services.log('Gemini HTTP ' + response.getResponseCode() + ': the template text is used');
      return null;
    }
    var data = JSON.parse(response.getContentText());
    var parts = (((data.candidates || [])[0] || {}).content || {}).parts || [];
    var text = parts.map(function (/** @type {{text?: string}} */ p) { return p.text || ''; }).join('').trim();
    if (!usableNarrative(text, report)) {
      services.log('Gemini narrative rejected (a number is not a computed figure): the template text is used');
      return null;
    }
    return text;
  } catch (e) {
    services.log('Gemini unavailable: ' + e + '; the template text is used');
    return null;
  }
}

/**
 * Runs one worker pass: claim a batch, compute each report, write the outcomes.
 * @param {WorkerServices} services @param {WorkerOptions} options @returns {RunResult}
 */
function runQueue(services, options) {
  var began = services.now().getTime();
  /** @type {RunResult} */
  var result = {claimed: 0, done: 0, failed: 0, retried: 0, released: 0, lost: 0, skipped: false};
  var claims = claimBatch(services, options);
  if (claims === null) {
    result.skipped = true;
    return result;
  }
  result.claimed = claims.length;
  if (!claims.length) return result;

  /** @type {{objects: Array<Object<string, string>>, market: Array<Object<string, string>>}|null} */
  var data = null;
  /** @type {*} */
  var dataError = null;
  try {
    var book = services.spreadsheet();
    data = {objects: readRows_(book, OBJECTS_SHEET), market: readRows_(book, MARKET_SHEET)};
  } catch (e) {
    dataError = e;
  }

  for (var i = 0; i < claims.length; i++) {
    var claim = claims[i];
    if (services.now().getTime() - began > options.maxRuntimeMs) {
      // Out of time: hand the rest back untouched (the claim does not count as an attempt).
      var handed = {status: 'NEW', started_at: '', attempts: String(claim.attempts - 1)};
      if (finishClaim(services, options, claim, handed)) result.released += 1; else result.lost += 1;
      continue;
    }
    var now = services.now();
    try {
      if (data === null) throw dataError;
      var report = analyze(claim.code, data.objects, data.market, moscowDate(now));
      var narrative = geminiNarrative(services, report);
      var summary = renderSummary(report, narrative);
      var pdfUrl = services.savePdf(report, narrative, claim.id);
      var done = finalUpdates_('DONE', '', moscowStamp(services.now()));
      done.result_text = summary;
      done.pdf_url = pdfUrl;
      if (finishClaim(services, options, claim, done)) result.done += 1; else result.lost += 1;
    } catch (e) {
      var outcome = failureUpdates_(e, claim, options, moscowStamp(services.now()));
      services.log('request ' + claim.id + ' (' + claim.code + '): ' + outcome.status + ': ' + e);
      if (!finishClaim(services, options, claim, outcome)) result.lost += 1;
      else if (outcome.status === 'NEW') result.retried += 1;
      else result.failed += 1;
    }
  }
  return result;
}

/**
 * What to write after a failure: the analysis's own message (final), else a retry while attempts remain.
 * @param {*} error @param {Claim} claim @param {WorkerOptions} options @param {string} finishedAt
 * @returns {Object<string, string>}
 */
function failureUpdates_(error, claim, options, finishedAt) {
  if (error instanceof AnalysisError) return finalUpdates_('ERROR', error.message, finishedAt);
  var detail = error && error.message ? error.message : String(error);
  if (claim.attempts < options.maxAttempts) {
    return {status: 'NEW', started_at: '', error: 'Попытка ' + claim.attempts + ' не удалась: ' + detail};
  }
  return finalUpdates_('ERROR',
    'Отчёт не удалось подготовить из-за технической ошибки (' + detail + '). Попробуйте позже.', finishedAt);
}

/**
 * The cells of a final outcome (DONE or ERROR), as the Python worker's _final writes them.
 * delivered_at is cleared: the bot delivers a finished row once and marks delivered_at, so a request
 * staff set back to NEW must lose the old mark to be delivered again after it is recomputed.
 * @param {string} status @param {string} error @param {string} finishedAt @returns {Object<string, string>}
 */
function finalUpdates_(status, error, finishedAt) {
  return {status: status, error: error, finished_at: finishedAt, delivered_at: ''};
}

// ---------------------------------------------------------------- PDF in Drive

/**
 * The trend chart as a PNG data: URI (Charts service), or null if it cannot be drawn.
 * @param {Report} report @returns {string|null}
 */
function trendChartDataUri_(report) {
  var points = report.trend.filter(function (p) { return p.median_ppm2 !== null; });
  if (!points.length) return null;
  try {
    var table = Charts.newDataTable()
      .addColumn(Charts.ColumnType.STRING, 'Месяц')
      .addColumn(Charts.ColumnType.NUMBER, 'Медиана аналогов, ₽/м²')
      .addColumn(Charts.ColumnType.NUMBER, 'Объект, ₽/м²');
    points.forEach(function (p) { table.addRow([monthLabel(p.month), p.median_ppm2, report.price_per_m2]); });
    var chart = Charts.newLineChart().setDataTable(table).setDimensions(640, 260)
      .setColors(['#1f5fa8', '#c0392b']).setPointStyle(Charts.PointStyle.MEDIUM)
      .setLegendPosition(Charts.Position.BOTTOM).build();
    return 'data:image/png;base64,' + Utilities.base64Encode(chart.getAs('image/png').getBytes());
  } catch (e) {
    console.log('chart not drawn: ' + e);
    return null;
  }
}

/**
 * Shares a report file or folder with the bot's service account only (Script Property SERVICE_ACCOUNT_EMAIL):
 * no link sharing, so a forwarded URL opens nothing. The bot downloads the PDF through the Drive API and sends
 * the file itself to the partner.
 * @param {{setSharing: Function, addViewer: Function}} item @param {GoogleAppsScript.Properties.Properties} props
 */
function shareWithBotOnly_(item, props) {
  item.setSharing(DriveApp.Access.PRIVATE, DriveApp.Permission.NONE);
  var account = props.getProperty('SERVICE_ACCOUNT_EMAIL');
  if (account) {
    item.addViewer(account);
  } else {
    console.log('SERVICE_ACCOUNT_EMAIL is not set: the bot cannot download the report');
  }
}

/**
 * The folder for PDFs: PDF_FOLDER_ID, else a private folder created once and remembered in Script Properties.
 * @param {GoogleAppsScript.Properties.Properties} props @returns {GoogleAppsScript.Drive.Folder}
 */
function pdfFolder_(props) {
  var id = props.getProperty('PDF_FOLDER_ID');
  if (id) return DriveApp.getFolderById(id);
  var folder = DriveApp.createFolder(PDF_FOLDER_NAME);
  shareWithBotOnly_(folder, props);
  props.setProperty('PDF_FOLDER_ID', folder.getId());
  return folder;
}

/**
 * Renders the report to PDF, stores it in Drive (private: the bot's service account may read it) and returns
 * its URL, from which the bot takes the file id.
 * @param {Report} report @param {string|null} narrative @param {string} requestId
 * @param {GoogleAppsScript.Properties.Properties} props @returns {string}
 */
function savePdfToDrive_(report, narrative, requestId, props) {
  var html = reportHtml(report, narrative, trendChartDataUri_(report));
  var name = 'analytics-' + report.object_code + '-' + requestId + '.pdf';
  var blob = HtmlService.createHtmlOutput(html).getBlob().getAs('application/pdf').setName(name);
  var file = pdfFolder_(props).createFile(blob);
  shareWithBotOnly_(file, props);
  return file.getUrl();
}

if (typeof module !== 'undefined') {
  /** @type {any} */ (module).exports = {
    WORKER_DEFAULTS: WORKER_DEFAULTS, installTrigger: installTrigger, processQueue: processQueue,
    runQueue: runQueue, claimBatch: claimBatch, finishClaim: finishClaim, geminiNarrative: geminiNarrative,
    appsScriptServices: appsScriptServices, moscowStamp: moscowStamp, claimStamp: claimStamp, moscowDate: moscowDate,
  };
}
