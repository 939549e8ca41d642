'use strict';
// The Apps Script worker under Node. The three source files are run as plain scripts in one global
// scope, as Apps Script does, and the Apps Script services are small in-memory stubs written here.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

for (const file of ['analysis.js', 'report.js', 'worker.js']) {
  vm.runInThisContext(fs.readFileSync(path.join(__dirname, '..', 'src', file), 'utf8'), {filename: file});
}
const G = /** @type {any} */ (globalThis);

const QUEUE_HEADERS = ['id', 'created_at', 'object_code', 'telegram_id', 'requested_by', 'status', 'started_at',
  'finished_at', 'pdf_url', 'error', 'result_text', 'delivered_at', 'attempts'];
const HAND = JSON.parse(fs.readFileSync(path.join(__dirname, 'vectors', 'hand_small.json'), 'utf8'));

// ---------------------------------------------------------------- stubs

// Text that Sheets' input parsing turns into a date-time: ISO with `T` or a space, seconds, fraction and
// offset optional. Range.setValues parses strings like typed input unless the cell is plain text ('@').
const SHEETS_DATE_TIME = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?$/;
const SHEET_OFFSET_MS = 3 * 3600 * 1000; // the spreadsheet's zone, Europe/Moscow

/** A Date for date-like text as Sheets stores it (wall clock in the sheet's zone; ms and offset dropped). */
function sheetsDate(text) {
  const m = SHEETS_DATE_TIME.exec(text);
  if (!m) return null;
  const [y, mo, d, h, mi, sec] = m.slice(1).map((x) => Number(x || 0));
  return new Date(Date.UTC(y, mo - 1, d, h, mi, sec) - SHEET_OFFSET_MS);
}

/** How a date-time cell is displayed: `ru` (the agency's locale) `24.11.2026 15:10:05`, or `iso`. */
function displayDate(date, locale) {
  const w = new Date(date.getTime() + SHEET_OFFSET_MS).toISOString();
  const [ymd, hms] = [w.slice(0, 10), w.slice(11, 19)];
  return locale === 'iso' ? ymd + ' ' + hms : ymd.split('-').reverse().join('.') + ' ' + hms;
}

/**
 * A sheet held as an array of rows (header first). Like Sheets, setValues stores date-like text written
 * into a cell that is not formatted as plain text as a Date: getValues gives the Date, getDisplayValues
 * its rendering in the sheet's locale. `ignoreFormats` drops setNumberFormat calls (a worker without them).
 */
function makeSheet(rows, hooks, {locale = 'ru', ignoreFormats = false} = {}) {
  const textCells = new Set(); // "row,col" of cells formatted '@'
  const display = (v) => (v instanceof Date ? displayDate(v, locale) : String(v));
  const sheet = {
    rows,
    formats: [],
    getDataRange() {
      if (hooks.onRead) hooks.onRead(sheet);
      return {
        getValues: () => sheet.rows.map((r) => r.slice()),
        getDisplayValues: () => sheet.rows.map((r) => r.map(display)),
      };
    },
    getRange(row, col, numRows, numCols) {
      return {
        setNumberFormat(format) {
          if (ignoreFormats) return this;
          sheet.formats.push({row, col, numCols, format});
          for (let i = 0; i < numRows; i++) {
            for (let j = 0; j < numCols; j++) {
              const key = `${row + i},${col + j}`;
              if (format === '@') textCells.add(key); else textCells.delete(key);
            }
          }
          return this;
        },
        setValues(values) {
          assert.equal(values.length, numRows);
          values.forEach((vals, i) => {
            assert.equal(vals.length, numCols);
            const target = sheet.rows[row - 1 + i];
            vals.forEach((v, j) => {
              const parsed = typeof v === 'string' && !textCells.has(`${row + i},${col + j}`) ? sheetsDate(v) : null;
              target[col - 1 + j] = parsed || v;
            });
          });
          return this;
        },
      };
    },
  };
  return sheet;
}

function rowsFromRecords(records) {
  const headers = Object.keys(records[0]);
  return [headers, ...records.map((r) => headers.map((h) => r[h]))];
}

function queueRow(id, code, extra = {}) {
  const record = {id, created_at: '2026-11-24 10:00:00', object_code: code, telegram_id: '100001',
    requested_by: 'DEMO-001', status: 'NEW', started_at: '', finished_at: '', pdf_url: '', error: '',
    result_text: '', delivered_at: '', attempts: '', ...extra};
  return QUEUE_HEADERS.map((h) => record[h]);
}

/** Installs fresh Apps Script stubs as globals and returns their state. */
function installStubs({queueRows, headers = QUEUE_HEADERS, properties = {}, sheet = {}} = {}) {
  const hooks = {};
  const state = {hooks, files: [], folders: [], fetches: [], triggers: [], flushes: 0, lockOwner: null,
    properties: {...properties}, fetchReply: null};
  const sheets = {
    'Очередь': makeSheet([headers, ...(queueRows || [])], hooks, sheet),
    'Объекты': makeSheet(rowsFromRecords(HAND.objects), {}),
    'Рынок': makeSheet(rowsFromRecords(HAND.market), {}),
  };
  state.sheets = sheets;
  state.queue = sheets['Очередь'];
  const book = {getSheetByName: (name) => sheets[name] || null};
  G.SpreadsheetApp = {
    getActiveSpreadsheet: () => book,
    openById: () => book,
    flush: () => { state.flushes += 1; },
  };
  G.LockService = {
    getScriptLock() {
      const handle = {
        tryLock() {
          if (state.lockOwner !== null && state.lockOwner !== handle) return false;
          state.lockOwner = handle;
          return true;
        },
        releaseLock() { if (state.lockOwner === handle) state.lockOwner = null; },
        hasLock() { return state.lockOwner === handle; },
      };
      return handle;
    },
  };
  G.PropertiesService = {
    getScriptProperties: () => ({
      getProperty: (k) => (k in state.properties ? state.properties[k] : null),
      setProperty(k, v) { state.properties[k] = v; return this; },
    }),
  };
  const blob = (content, type) => ({
    content, type, name: '',
    getAs(t) { return blob(content, t); },
    setName(n) { this.name = n; return this; },
    getBytes: () => Array.from(Buffer.from(String(content))),
  });
  G.HtmlService = {createHtmlOutput: (html) => ({getBlob: () => blob(html, 'text/html')})};
  const folder = (id, name) => ({
    id, name, sharing: null, viewers: [],
    getId: () => id,
    setSharing(access, permission) { this.sharing = [access, permission]; return this; },
    addViewer(email) { this.viewers.push(email); return this; },
    createFile(b) {
      if (hooks.onCreateFile) hooks.onCreateFile(b);
      const file = {blob: b, sharing: null, viewers: [], folder: id,
        setSharing(access, permission) { this.sharing = [access, permission]; return this; },
        addViewer(email) { this.viewers.push(email); return this; },
        getUrl: () => 'https://drive.example/' + b.name};
      state.files.push(file);
      return file;
    },
  });
  G.DriveApp = {
    Access: {ANYONE_WITH_LINK: 'ANYONE_WITH_LINK', ANYONE: 'ANYONE', DOMAIN_WITH_LINK: 'DOMAIN_WITH_LINK',
      PRIVATE: 'PRIVATE'},
    Permission: {VIEW: 'VIEW', NONE: 'NONE'},
    createFolder(name) { const f = folder('folder-' + (state.folders.length + 1), name); state.folders.push(f); return f; },
    getFolderById(id) { return state.folders.find((f) => f.id === id) || folder(id, 'given'); },
  };
  const chain = (end) => new Proxy({}, {get: (_, prop) => (prop === 'build' ? end : () => chain(end))});
  G.Charts = {
    ColumnType: {STRING: 'string', NUMBER: 'number'},
    PointStyle: {MEDIUM: 'medium'},
    Position: {BOTTOM: 'bottom'},
    newDataTable: () => chain(() => ({})),
    newLineChart: () => chain(() => ({getAs: () => blob('PNG', 'image/png')})),
  };
  G.Utilities = {base64Encode: (bytes) => Buffer.from(bytes).toString('base64')};
  G.UrlFetchApp = {
    fetch(url, params) {
      state.fetches.push({url, params});
      const reply = state.fetchReply || {code: 500, body: '{}'};
      return {getResponseCode: () => reply.code, getContentText: () => reply.body};
    },
  };
  G.ScriptApp = {
    getProjectTriggers: () => state.triggers,
    newTrigger(handler) {
      const spec = {handler};
      const builder = {
        timeBased() { return builder; },
        everyMinutes(n) { spec.minutes = n; return builder; },
        create() { const t = {getHandlerFunction: () => handler, spec}; state.triggers.push(t); return t; },
      };
      return builder;
    },
  };
  return state;
}

/** The queue row with this id as an object header → value. */
function row(state, id) {
  const [headers, ...rows] = state.queue.rows;
  const found = rows.find((r) => r[headers.indexOf('id')] === id);
  return Object.fromEntries(headers.map((h, i) => [h, found[i]]));
}

/** Services like the real ones but with a scripted clock. */
function servicesWithClock(clock) {
  return {...G.appsScriptServices(), now: () => new Date(clock())};
}

const quiet = () => {};
test.beforeEach(() => { G.console = {...console, log: quiet}; });
test.afterEach(() => { G.console = console; });

// ---------------------------------------------------------------- tests

test('installTrigger creates one every-minute trigger and is idempotent', () => {
  const state = installStubs();
  assert.equal(G.installTrigger(), true);
  assert.equal(G.installTrigger(), false);
  assert.equal(state.triggers.length, 1);
  assert.equal(state.triggers[0].getHandlerFunction(), 'processQueue');
  assert.equal(state.triggers[0].spec.minutes, 1);
});

test('processQueue turns NEW rows into DONE with text and PDF link, or ERROR for an unknown object', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1'), queueRow('b', 'NOPE-9'), queueRow('c', 'h-2')]});
  const result = G.processQueue({triggerUid: 'event object is ignored'});
  assert.deepEqual(result, {claimed: 3, done: 2, failed: 1, retried: 0, released: 0, lost: 0, skipped: false});

  const a = row(state, 'a');
  const expected = G.analyze('H-1', HAND.objects, HAND.market, G.moscowDate(new Date()));
  assert.equal(a.status, 'DONE');
  assert.equal(a.result_text, G.renderSummary(expected));
  assert.equal(a.attempts, '1');
  assert.match(a.started_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+03:00$/);
  assert.match(a.finished_at, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  assert.equal(a.pdf_url, 'https://drive.example/analytics-H-1-a.pdf');
  assert.equal(a.error, '');

  const b = row(state, 'b');
  assert.equal(b.status, 'ERROR');
  assert.match(b.error, /NOPE-9 не найден/);
  assert.equal(b.result_text, '');
  assert.equal(row(state, 'c').status, 'DONE');

  assert.equal(state.files.length, 2);
  assert.deepEqual(state.files[0].sharing, ['PRIVATE', 'NONE'], 'reports are never shared by link');
  assert.equal(state.files[0].blob.type, 'application/pdf');
  assert.match(state.files[0].blob.content, /Аналитика 360 · H-1/);
  assert.match(state.files[0].blob.content, /data:image\/png;base64,/);
  assert.equal(state.properties.PDF_FOLDER_ID, 'folder-1', 'the created folder is remembered');
  assert.ok(state.queue.formats.every((f) => f.format === '@'), 'cells are written as plain text');
  assert.equal(state.lockOwner, null, 'the lock is released');
});

test('report PDFs stay private: shared with the bot\'s service account only, never by link', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1')],
    properties: {SERVICE_ACCOUNT_EMAIL: 'bot@project.iam.gserviceaccount.com'}});
  G.processQueue();
  assert.equal(row(state, 'a').status, 'DONE');
  const [file] = state.files;
  assert.deepEqual(file.sharing, ['PRIVATE', 'NONE']);
  assert.deepEqual(file.viewers, ['bot@project.iam.gserviceaccount.com']);
  const [created] = state.folders;
  assert.deepEqual(created.sharing, ['PRIVATE', 'NONE'], 'the created folder is private too');
  assert.deepEqual(created.viewers, ['bot@project.iam.gserviceaccount.com']);
  assert.ok(!JSON.stringify(state.files.map((f) => f.sharing)).includes('ANYONE'));
});

test('columns are found by header, in any order', () => {
  const headers = [...QUEUE_HEADERS].reverse();
  const reorder = (r) => headers.map((h) => r[QUEUE_HEADERS.indexOf(h)]);
  const state = installStubs({headers, queueRows: [reorder(queueRow('a', 'H-1'))]});
  G.processQueue();
  assert.equal(row(state, 'a').status, 'DONE');
  assert.equal(row(state, 'a').attempts, '1');
});

test('a queue sheet without a required column fails loudly and releases the lock', () => {
  const headers = QUEUE_HEADERS.filter((h) => h !== 'attempts');
  const state = installStubs({headers, queueRows: [queueRow('a', 'H-1').slice(0, -1)]});
  assert.throws(() => G.processQueue(), /нет колонок: attempts/);
  assert.equal(state.lockOwner, null);
});

test('one run claims at most the batch size; the rest wait for the next run', () => {
  const rows = Array.from({length: 25}, (_, i) => queueRow('r' + i, 'H-1'));
  const state = installStubs({queueRows: rows});
  assert.equal(G.processQueue().claimed, 10);
  const statuses = () => state.queue.rows.slice(1).map((r) => r[QUEUE_HEADERS.indexOf('status')]);
  assert.equal(statuses().filter((s) => s === 'DONE').length, 10);
  assert.equal(statuses().filter((s) => s === 'NEW').length, 15);
  state.properties.BATCH_SIZE = '4';
  assert.equal(G.processQueue().claimed, 4);
  assert.equal(statuses().filter((s) => s === 'NEW').length, 11);
});

test('a run that starts while another holds the lock claims nothing', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1'), queueRow('b', 'H-1')]});
  let inner = null;
  let started = false;
  state.hooks.onRead = () => {
    if (started) return;
    started = true;
    inner = G.processQueue(); // the second run starts during the first one's claim
  };
  const outer = G.processQueue();
  assert.equal(inner.skipped, true);
  assert.equal(inner.claimed, 0);
  assert.equal(outer.claimed, 2);
  assert.equal(state.files.length, 2, 'each row computed once');
  assert.ok(['a', 'b'].every((id) => row(state, id).attempts === '1'));
});

test('two overlapping runs never claim the same row', () => {
  const ids = ['a', 'b', 'c', 'd', 'e'];
  const state = installStubs({queueRows: ids.map((id) => queueRow(id, 'H-1')), properties: {BATCH_SIZE: '2'}});
  let inner = null;
  let started = false;
  state.hooks.onCreateFile = () => {
    if (started) return;
    started = true;
    inner = G.processQueue(); // starts while the first run is computing
  };
  const outer = G.processQueue();
  assert.equal(outer.claimed, 2);
  assert.equal(inner.claimed, 2);
  const names = state.files.map((f) => f.blob.name);
  assert.equal(new Set(names).size, names.length, 'no request computed twice');
  assert.deepEqual(ids.map((id) => row(state, id).status), ['DONE', 'DONE', 'DONE', 'DONE', 'NEW']);
  assert.ok(ids.slice(0, 4).every((id) => row(state, id).attempts === '1'));
});

test('a row re-claimed by another run meanwhile is not overwritten', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1')]});
  state.hooks.onCreateFile = () => {
    const r = state.queue.rows[1];
    r[QUEUE_HEADERS.indexOf('started_at')] = '2026-11-24T12:00:00.123+03:00';
  };
  const result = G.processQueue();
  assert.deepEqual([result.done, result.lost], [0, 1], 'a dropped result is not counted as done');
  assert.equal(row(state, 'a').status, 'PROCESSING');
  assert.equal(row(state, 'a').result_text, '');
});

test('a finished request staff set back to NEW is computed again and loses its old delivery mark', () => {
  const old = {result_text: 'старый отчёт', finished_at: '2026-11-20 10:00:00', delivered_at: '2026-11-20 10:00:15'};
  const state = installStubs({queueRows: [
    queueRow('again', 'H-1', {...old, attempts: '1'}),
    queueRow('gone', 'NOPE-9', {...old, attempts: '1'}),
  ]});
  const result = G.processQueue();
  assert.deepEqual([result.done, result.failed], [1, 1]);
  const again = row(state, 'again');
  assert.equal(again.status, 'DONE');
  assert.equal(again.delivered_at, '', 'the bot delivers the new result');
  assert.notEqual(again.result_text, 'старый отчёт');
  assert.notEqual(again.finished_at, old.finished_at);
  assert.equal(again.attempts, '2');
  assert.deepEqual([row(state, 'gone').status, row(state, 'gone').delivered_at], ['ERROR', '']);
});

test('a stale claim that runs out of attempts ends in ERROR with its delivery mark cleared', () => {
  const now = Date.parse('2026-11-24T12:00:00Z');
  const state = installStubs({queueRows: [queueRow('spent', 'H-1', {status: 'PROCESSING', attempts: '3',
    started_at: G.claimStamp(new Date(now - 30 * 60000)), delivered_at: '2026-11-20 10:00:15'})]});
  G.runQueue(servicesWithClock(() => now), G.WORKER_DEFAULTS);
  assert.deepEqual([row(state, 'spent').status, row(state, 'spent').delivered_at], ['ERROR', '']);
});

test('the sheet stub parses date-like text into a Date unless the cell is plain text, as Sheets does', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1')]});
  const token = '2026-11-24T18:02:03.482+03:00';
  const col = QUEUE_HEADERS.indexOf('started_at') + 1;
  state.queue.getRange(2, col, 1, 2).setValues([[token, '2026-11-24 18:02:09']]);
  const raw = state.queue.getDataRange().getValues()[1];
  assert.ok(raw[col - 1] instanceof Date && raw[col] instanceof Date);
  assert.equal(raw[col - 1].getTime(), Date.parse('2026-11-24T18:02:03+03:00'));
  assert.deepEqual(state.queue.getDataRange().getDisplayValues()[1].slice(col - 1, col + 1),
    ['24.11.2026 18:02:03', '24.11.2026 18:02:09']);
  state.queue.getRange(2, col, 1, 1).setNumberFormat('@').setValues([[token]]);
  assert.equal(state.queue.getDataRange().getValues()[1][col - 1], token);
  state.queue.getRange(2, col, 1, 1).setValues([['PROCESSING']]);
  assert.equal(state.queue.getDataRange().getValues()[1][col - 1], 'PROCESSING', 'other text stays text');
});

test('claim tokens and times stay text through Sheets date parsing, so the worker finishes its own claims', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1'), queueRow('b', 'NOPE-9')]});
  const result = G.processQueue();
  assert.deepEqual([result.done, result.failed, result.lost], [1, 1, 0]);
  const [headers, ...rows] = state.queue.getDataRange().getValues();
  for (const id of ['a', 'b']) {
    const raw = Object.fromEntries(headers.map((h, i) => [h, rows.find((r) => r[0] === id)[i]]));
    assert.equal(typeof raw.started_at, 'string', 'the claim token is stored as written');
    assert.match(raw.started_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+03:00$/);
    // The bot's parse_stamp reads `2026-11-24 15:10:05` (and `24.11.2026 15:10:05`, not `11/24/2026 …`).
    assert.equal(typeof raw.finished_at, 'string');
    assert.match(raw.finished_at, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  }
  assert.deepEqual([row(state, 'a').status, row(state, 'b').status], ['DONE', 'ERROR']);
});

test('without the plain-text format every claim is lost to date parsing (the hazard the format prevents)', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1')], sheet: {ignoreFormats: true}});
  const result = G.processQueue();
  assert.deepEqual([result.claimed, result.done, result.lost], [1, 0, 1]);
  const a = row(state, 'a');
  assert.equal(a.status, 'PROCESSING', 'the result was dropped: the token read back as a date');
  assert.ok(a.started_at instanceof Date);
  assert.equal(a.result_text, '');
});

test('unexpected failures are retried until the attempt limit, then end in ERROR', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1')], properties: {MAX_ATTEMPTS: '3'}});
  state.hooks.onCreateFile = () => { throw new Error('Drive is down'); };
  G.processQueue();
  assert.deepEqual([row(state, 'a').status, row(state, 'a').attempts], ['NEW', '1']);
  assert.match(row(state, 'a').error, /Попытка 1 не удалась: Drive is down/);
  G.processQueue();
  assert.deepEqual([row(state, 'a').status, row(state, 'a').attempts], ['NEW', '2']);
  const last = G.processQueue();
  assert.deepEqual([row(state, 'a').status, row(state, 'a').attempts], ['ERROR', '3']);
  assert.match(row(state, 'a').error, /технической ошибки \(Drive is down\)/);
  assert.equal(last.failed, 1);
  assert.equal(G.processQueue().claimed, 0, 'an ERROR row is not claimed again');
});

test('a stale PROCESSING row is claimed again; a fresh one is left alone; an exhausted one ends in ERROR', () => {
  const now = Date.parse('2026-11-24T12:00:00Z');
  const minutesAgo = (m) => G.claimStamp(new Date(now - m * 60000));
  const state = installStubs({queueRows: [
    queueRow('stale', 'H-1', {status: 'PROCESSING', started_at: minutesAgo(20), attempts: '1'}),
    queueRow('fresh', 'H-1', {status: 'PROCESSING', started_at: minutesAgo(1), attempts: '1'}),
    queueRow('spent', 'H-1', {status: 'PROCESSING', started_at: minutesAgo(30), attempts: '3'}),
  ]});
  const result = G.runQueue(servicesWithClock(() => now), G.WORKER_DEFAULTS);
  assert.equal(result.claimed, 1);
  assert.deepEqual([row(state, 'stale').status, row(state, 'stale').attempts], ['DONE', '2']);
  assert.deepEqual([row(state, 'fresh').status, row(state, 'fresh').attempts], ['PROCESSING', '1']);
  assert.equal(row(state, 'spent').status, 'ERROR');
  assert.match(row(state, 'spent').error, /за 3 попытки/);
});

test('a run stops taking work before the time limit and hands unstarted rows back', () => {
  const state = installStubs({queueRows: ['a', 'b', 'c', 'd'].map((id) => queueRow(id, 'H-1'))});
  let t = Date.parse('2026-11-24T12:00:00Z');
  const clock = () => { t += 60 * 1000; return t; }; // every look at the clock costs a minute
  const options = {...G.WORKER_DEFAULTS, maxRuntimeMs: 4 * 60 * 1000};
  const result = G.runQueue(servicesWithClock(clock), options);
  assert.equal(result.claimed, 4);
  assert.ok(result.done >= 1 && result.released >= 1, JSON.stringify(result));
  assert.equal(result.done + result.released, 4);
  const released = ['a', 'b', 'c', 'd'].map((id) => row(state, id)).filter((r) => r.status === 'NEW');
  assert.equal(released.length, result.released);
  assert.ok(released.every((r) => r.attempts === '0' && r.started_at === ''), 'the claim does not count');
});

test('a Gemini narrative whose numbers are computed figures replaces the template text', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1')],
    properties: {GEMINI_API_KEY: 'test-key', GEMINI_ANALYSIS_MODEL: 'gemini-test', GEMINI_BASE_URL: 'http://127.0.0.1:9/'}});
  const narrative = 'Цена 10 000 000 ₽ соответствует рынку: медиана 205 000 ₽/м², объект дороже 41,7% аналогов.';
  state.fetchReply = {code: 200, body: JSON.stringify({candidates: [{content: {parts: [{text: narrative}]}}]})};
  G.processQueue();
  const call = state.fetches[0];
  assert.equal(call.url, 'http://127.0.0.1:9/v1beta/models/gemini-test:generateContent');
  assert.equal(call.params.headers['x-goog-api-key'], 'test-key');
  assert.match(JSON.parse(call.params.payload).contents[0].parts[0].text, /Медиана цены за м²: 205\u00a0000/);
  assert.ok(row(state, 'a').result_text.includes(narrative));
  assert.ok(state.files[0].blob.content.includes('Цена 10 000 000 ₽ соответствует рынку'));
});

test('an invented number or an AI error leaves the template text', () => {
  for (const reply of [
    {code: 200, body: JSON.stringify({candidates: [{content: {parts: [{text: 'Цена вырастет на 17% за год.'}]}}]})},
    {code: 503, body: 'unavailable'},
    {code: 200, body: 'not json'},
  ]) {
    const state = installStubs({queueRows: [queueRow('a', 'H-1')], properties: {GEMINI_API_KEY: 'k'}});
    state.fetchReply = reply;
    G.processQueue();
    const text = row(state, 'a').result_text;
    assert.equal(row(state, 'a').status, 'DONE');
    assert.ok(!text.includes('17%'));
    assert.ok(text.includes('Рыночный диапазон — от нижнего до верхнего квартиля'), text);
  }
});

test('without a Gemini key nothing is fetched', () => {
  const state = installStubs({queueRows: [queueRow('a', 'H-1')]});
  G.processQueue();
  assert.equal(state.fetches.length, 0);
  assert.equal(row(state, 'a').status, 'DONE');
});

test('times are written in Moscow time', () => {
  const moment = new Date('2026-11-24T21:30:05.123Z');
  assert.equal(G.moscowStamp(moment), '2026-11-25 00:30:05');
  assert.equal(G.claimStamp(moment), '2026-11-25T00:30:05.123+03:00');
  assert.equal(G.moscowDate(moment), '2026-11-25');
  assert.equal(Date.parse(G.claimStamp(moment)), moment.getTime());
});
