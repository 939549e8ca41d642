// The local staff console: every sheet of the local store as an editable table, through the gateway.
// Plain ES module, no build step (same reasons as app.js).

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
const state = { sheets: [], sheet: null, rows: [], dropdowns: {}, editing: false, timer: 0 };
const norm = (text) => String(text ?? '').trim().replace(/\s+/g, ' ').toLowerCase();

// The allowed values of column c (as `sheets init` sets the real sheet's data validation), or null.
function optionsFor(c) {
  const header = norm(state.rows[0]?.[c]);
  if (!header) return null;
  for (const [name, values] of Object.entries(state.dropdowns)) {
    if (norm(name) === header) return values;
  }
  return null;
}

function columnName(index) {
  let n = index + 1;
  let name = '';
  while (n > 0) {
    const r = (n - 1) % 26;
    name = String.fromCharCode(65 + r) + name;
    n = Math.floor((n - 1) / 26);
  }
  return name;
}

function say(text, isError = false) {
  const box = $('message');
  box.textContent = text;
  box.className = isError ? 'message error' : 'message';
  box.hidden = false;
}

async function call(path, options = {}) {
  let res;
  try {
    res = await fetch(path, options);
  } catch {
    throw new Error('Сервер не отвечает.');
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(data?.error?.message ?? `Ошибка ${res.status}`);
  return data;
}

function sheetPath(sheet) {
  return `staff/api/sheets/${encodeURIComponent(sheet)}`;
}

function renderTabs() {
  const nav = $('sheets');
  nav.replaceChildren();
  for (const sheet of state.sheets) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = sheet;
    button.setAttribute('aria-selected', String(sheet === state.sheet));
    button.addEventListener('click', () => selectSheet(sheet));
    nav.append(button);
  }
}

function renderGrid() {
  const width = Math.max(1, ...state.rows.map((r) => r.length));
  const table = $('grid');
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  head.append(document.createElement('th'));
  for (let c = 0; c < width; c += 1) {
    const th = document.createElement('th');
    th.textContent = columnName(c);
    head.append(th);
  }
  const body = table.createTBody();
  // One spare row at the bottom so staff can add a row by typing into it.
  const rows = [...state.rows, []];
  rows.forEach((row, r) => {
    const tr = body.insertRow();
    const num = document.createElement('th');
    num.className = 'rownum';
    num.textContent = String(r + 1);
    tr.append(num);
    for (let c = 0; c < width; c += 1) {
      const td = tr.insertCell();
      const cell = document.createElement('div');
      cell.className = 'cell';
      cell.textContent = row[c] ?? '';
      td.append(cell);
      td.dataset.a1 = `${columnName(c)}${r + 1}`;
      const options = r > 0 ? optionsFor(c) : null;
      if (options) {
        td.classList.add('dropdown');
        td.addEventListener('click', () => choose(td, row[c] ?? '', options));
      } else {
        td.addEventListener('click', () => edit(td, row[c] ?? ''));
      }
    }
  });
  // A conversation log grows at the bottom: show its newest entries (the ones staff act on); the
  // cell scrolls up to older ones, and its button expands it.
  for (const cell of table.querySelectorAll('.cell')) {
    if (cell.scrollHeight > cell.clientHeight + 1) {
      cell.classList.add('long');
      cell.scrollTop = cell.scrollHeight;
      cell.title = 'Показаны последние записи: прокрутите вверх или разверните ячейку';
      const toggle = document.createElement('button');
      toggle.type = 'button';
      toggle.className = 'expand';
      toggle.textContent = 'Развернуть';
      toggle.addEventListener('click', (e) => {
        e.stopPropagation(); // not an edit
        const open = cell.classList.toggle('expanded');
        toggle.textContent = open ? 'Свернуть' : 'Развернуть';
        if (!open) cell.scrollTop = cell.scrollHeight;
      });
      cell.after(toggle);
    }
  }
}

async function save(td, value) {
  await call(`${sheetPath(state.sheet)}/cells`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ a1: td.dataset.a1, value }),
  });
  say(`Сохранено: ${state.sheet}!${td.dataset.a1}`);
  await load();
  document.querySelector(`td[data-a1="${td.dataset.a1}"]`)?.classList.add('saved');
}

// A column with data validation: a dropdown of the allowed values (a value typed earlier stays listed).
function choose(td, value, options) {
  if (td.querySelector('select')) return;
  state.editing = true;
  const select = document.createElement('select');
  const values = ['', ...options];
  if (!values.includes(value)) values.push(value);
  for (const v of values) select.append(new Option(v || '—', v));
  select.value = value;
  td.replaceChildren(select);
  select.focus();
  let done = false;
  const finish = async (commit) => {
    if (done) return;
    done = true;
    state.editing = false;
    if (commit && select.value !== value) {
      try {
        await save(td, select.value);
        return;
      } catch (err) {
        say(`Не сохранено: ${err.message}`, true);
      }
    }
    renderGrid();
  };
  select.addEventListener('change', () => finish(true));
  select.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') finish(false);
  });
  select.addEventListener('blur', () => finish(false));
}

function edit(td, value) {
  if (td.querySelector('textarea')) return;
  state.editing = true;
  const area = document.createElement('textarea');
  area.value = value;
  td.replaceChildren(area);
  area.focus();
  let done = false;
  const finish = async (commit) => {
    if (done) return;
    done = true;
    state.editing = false;
    if (commit && area.value !== value) {
      try {
        await save(td, area.value);
        return;
      } catch (err) {
        say(`Не сохранено: ${err.message}`, true);
      }
    }
    renderGrid();
  };
  area.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      finish(true);
    } else if (e.key === 'Escape') {
      finish(false);
    }
  });
  area.addEventListener('blur', () => finish(true));
}

async function load() {
  if (!state.sheet) return;
  try {
    const data = await call(sheetPath(state.sheet), { cache: 'no-store' });
    state.rows = data.rows;
    state.dropdowns = data.dropdowns ?? {};
    if (!state.editing) renderGrid();
  } catch (err) {
    say(`Не удалось прочитать лист: ${err.message}`, true);
  }
}

async function selectSheet(sheet) {
  state.sheet = sheet;
  window.location.hash = encodeURIComponent(sheet);
  renderTabs();
  $('message').hidden = true;
  await load();
}

function schedule() {
  clearTimeout(state.timer);
  if ($('auto').checked) {
    state.timer = setTimeout(async () => {
      if (!state.editing && document.visibilityState === 'visible') await load();
      schedule();
    }, REFRESH_MS);
  }
}

async function start() {
  $('reload').addEventListener('click', load);
  $('auto').addEventListener('change', schedule);
  try {
    state.sheets = (await call('staff/api/sheets')).sheets;
  } catch (err) {
    say(`Не удалось получить список листов: ${err.message}`, true);
    return;
  }
  const wanted = decodeURIComponent(window.location.hash.slice(1));
  await selectSheet(state.sheets.includes(wanted) ? wanted : state.sheets[0]);
  schedule();
}

start();
