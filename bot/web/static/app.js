// The Mini App: Chat, Objects (catalogue), Analytics and Promotions tabs over the JSON API (Russian UI).
// Live updates arrive on one server-sent event stream (/api/events) read with fetch, since EventSource
// cannot send the Authorization header.
// Plain ES modules with no build step: the page is small, there is no toolchain to pin or audit,
// and the files load as they are from the Python package — offline, in Telegram and in a browser.

const tg = window.Telegram?.WebApp ?? null;
const inTelegram = Boolean(tg && tg.initData);
const devMode = document.body.dataset.dev === 'on';
const POLL_MS = 3000;
const POLL_MAX_MS = 30000;
const CHAT_REFRESH_MS = 15000;
const STREAM_RETRY_MS = 1000;
const STREAM_RETRY_MAX_MS = 30000;
const SEARCH_DEBOUNCE_MS = 300;

const JOB_STATUS = {
  NEW: { label: 'В очереди', tone: 'wait' },
  PROCESSING: { label: 'Считается', tone: 'wait' },
  DONE: { label: 'Готово', tone: 'ok' },
  ERROR: { label: 'Ошибка', tone: 'bad' },
};
const IN_WORK = 'В работе';
const CHAT_STATUS_NOTE = {
  [IN_WORK]: 'С вами работает оператор агентства — ответ появится здесь и в чате с ботом.',
  'Новое': 'Обращение зарегистрировано.',
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let initData = inTelegram ? tg.initData : '';

async function ensureInitData(force = false) {
  if (initData && !force) return;
  if (!devMode) return;
  // Local demo only: the server signs initData for the demo partner so the real check runs.
  const res = await fetch('dev/init-data', { cache: 'no-store' });
  if (res.ok) initData = (await res.json()).init_data;
}

async function api(path, { method = 'GET', body, retried = false } = {}) {
  const headers = { Authorization: `tma ${initData}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'network', 'Нет связи с сервером. Проверьте интернет и попробуйте ещё раз.');
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.ok) return data;
  if (res.status === 401 && devMode && !retried) {
    await ensureInitData(true); // the dev initData is valid for a day: sign a fresh one once
    return api(path, { method, body, retried: true });
  }
  const err = data && data.error;
  throw new ApiError(
    res.status,
    err?.code ?? `http_${res.status}`,
    err?.message ?? 'Сервер ответил ошибкой. Попробуйте чуть позже.',
  );
}

// POST a chat message asking for server-sent events: `onDelta(text)` for each piece of the answer as the
// assistant writes it, then the `done` event's data is returned ({reply, status, escalated}). Errors that
// come before the stream (401, 429 daily limit, 503) are JSON, exactly as from api().
async function apiChatStream(body, onDelta, retried = false) {
  const headers = {
    Authorization: `tma ${initData}`,
    'Content-Type': 'application/json',
    Accept: 'text/event-stream',
  };
  let res;
  try {
    res = await fetch('api/chat', { method: 'POST', headers, body: JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'network', 'Нет связи с сервером. Проверьте интернет и попробуйте ещё раз.');
  }
  if (res.status === 401 && devMode && !retried) {
    await ensureInitData(true);
    return apiChatStream(body, onDelta, true);
  }
  const type = res.headers.get('Content-Type') || '';
  if (!res.ok || !type.startsWith('text/event-stream')) {
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (res.ok) return data;
    const err = data && data.error;
    throw new ApiError(
      res.status,
      err?.code ?? `http_${res.status}`,
      err?.message ?? 'Сервер ответил ошибкой. Попробуйте чуть позже.',
    );
  }
  let done = null;
  const handle = (block) => {
    let event = 'message';
    const lines = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) lines.push(line.slice(5).replace(/^ /, ''));
    }
    if (!lines.length) return;
    const data = JSON.parse(lines.join('\n'));
    if (event === 'delta') onDelta(data.text ?? '');
    else if (event === 'done') done = data;
    else if (event === 'error') {
      throw new ApiError(500, data.error?.code ?? 'internal', data.error?.message ?? 'Ответ прервался.');
    }
  };
  let buffer = '';
  if (!res.body || !res.body.getReader) {
    // An old WebView without fetch streaming: the answer arrives whole, the events are still in order.
    (await res.text()).replace(/\r\n?/g, '\n').split('\n\n').forEach((block) => handle(block));
    if (!done) throw new ApiError(0, 'network', 'Связь прервалась. Проверьте интернет и попробуйте ещё раз.');
    return done;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done: finished } = await reader.read();
      buffer += decoder.decode(value ?? new Uint8Array(), { stream: !finished });
      buffer = buffer.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        handle(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
      if (finished) break;
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(0, 'network', 'Связь прервалась. Проверьте интернет и попробуйте ещё раз.');
  }
  if (buffer.trim()) handle(buffer);
  if (!done) throw new ApiError(0, 'network', 'Связь прервалась. Проверьте интернет и попробуйте ещё раз.');
  return done;
}

// ---------------------------------------------------------------------------------------------
// Small UI helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function haptic(kind) {
  try {
    if (!inTelegram) return;
    if (kind === 'select') tg.HapticFeedback.selectionChanged();
    else tg.HapticFeedback.notificationOccurred(kind);
  } catch {
    /* older clients have no haptics */
  }
}

let toastTimer = 0;
function toast(text) {
  const box = $('toast');
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 3500);
}

function showState(box, { kind, title, text, retry }) {
  box.replaceChildren();
  box.className = `state state-${kind}`;
  if (kind === 'loading') box.append(el('div', 'spinner'));
  if (title) box.append(el('p', 'state-title', title));
  if (text) box.append(el('p', 'muted', text));
  if (retry) {
    const btn = el('button', 'btn primary', 'Повторить');
    btn.type = 'button';
    btn.addEventListener('click', retry);
    box.append(btn);
  }
  box.hidden = false;
}

function hideState(box) {
  box.hidden = true;
  box.replaceChildren();
}

const pad2 = (n) => String(n).padStart(2, '0');

// '2026-11-24 15:10:05' (the sheet's text) or ISO → '24.11 15:10'; a time with a zone is shown in the
// phone's own zone; anything else is shown as is.
function shortTime(text) {
  if (!text) return '';
  if (/[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(text)) {
    const d = new Date(text);
    if (!Number.isNaN(d.getTime())) return `${pad2(d.getDate())}.${pad2(d.getMonth() + 1)} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  }
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2}):(\d{2})/.exec(text);
  return m ? `${m[3]}.${m[2]} ${m[4].padStart(2, '0')}:${m[5]}` : text;
}

function nowIso() {
  return new Date().toISOString();
}

function formatRub(n) {
  return `${Math.round(n).toLocaleString('ru-RU')} ₽`;
}

// 401 and 403 block the whole app: nothing works until the user reopens it or authorizes in the bot.
function fatal(err) {
  if (err.status !== 401 && err.status !== 403) return false;
  $('fatal-title').textContent = err.status === 401 ? 'Откройте приложение из Telegram' : 'Нет доступа';
  $('fatal-text').textContent = err.message;
  $('fatal').dataset.kind = err.status === 401 ? 'auth' : 'forbidden';
  $('fatal').hidden = false;
  document.querySelector('main').hidden = true;
  document.querySelector('.tabs').hidden = true;
  if (inTelegram) tg.MainButton.hide();
  haptic('error');
  return true;
}

// ---------------------------------------------------------------------------------------------
// Navigation: tabs, the job detail view, Telegram's MainButton and BackButton

const state = {
  tab: 'chat',
  openJobId: null,
  busy: false,
  jobs: [],
  jobsLoaded: false,
  pollTimer: 0,
  pollDelay: POLL_MS,
  chatStatus: '',
  seen: new Set(),
  chatTimer: 0,
  stream: null,
  streamDelay: STREAM_RETRY_MS,
  streamTimer: 0,
  lastEventId: '',
  historyLoaded: false,
  historyLoads: 0,
  liveDuringLoad: [],
  catalogueLoaded: false,
  catalogueTimer: 0,
  catalogueSeq: 0,
  promotionsLoaded: false,
};

function showTab(tab) {
  state.tab = tab;
  state.openJobId = null;
  for (const button of document.querySelectorAll('.tab')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === tab));
  }
  $('view-chat').hidden = tab !== 'chat';
  $('view-analytics').hidden = tab !== 'analytics';
  $('view-catalogue').hidden = tab !== 'catalogue';
  $('view-promotions').hidden = tab !== 'promotions';
  $('view-job').hidden = true;
  if (tab === 'analytics' && !state.jobsLoaded) loadJobs();
  if (tab === 'catalogue' && !state.catalogueLoaded) loadCatalogue();
  if (tab === 'promotions') loadPromotions();
  syncTelegramButtons();
}

function openJob(id) {
  state.openJobId = id;
  $('view-analytics').hidden = true;
  $('view-job').hidden = false;
  renderJobDetail();
  syncTelegramButtons();
  window.scrollTo(0, 0);
}

function closeJob() {
  state.openJobId = null;
  $('view-job').hidden = true;
  $('view-analytics').hidden = false;
  syncTelegramButtons();
}

function currentJob() {
  return state.jobs.find((j) => j.id === state.openJobId) ?? null;
}

function mainAction() {
  if (state.openJobId) {
    const job = currentJob();
    if (job?.pdf_url) openPdf(job.pdf_url);
  } else if (state.tab === 'chat') {
    sendMessage();
  } else if (state.tab === 'analytics') {
    orderAnalytics();
  }
}

function syncTelegramButtons() {
  if (!inTelegram) return;
  const mb = tg.MainButton;
  let text = '';
  if (state.openJobId) text = currentJob()?.pdf_url ? 'Открыть PDF-отчёт' : '';
  else if (state.tab === 'chat' && $('chat-input').value.trim()) text = 'Отправить';
  else if (state.tab === 'analytics' && $('object-code').value.trim()) text = 'Заказать анализ';
  if (text) {
    mb.setText(text);
    mb.show();
  } else {
    mb.hide();
  }
  if (state.busy) mb.showProgress(false);
  else mb.hideProgress();
  if (state.openJobId) tg.BackButton.show();
  else tg.BackButton.hide();
}

function setBusy(busy) {
  state.busy = busy;
  $('chat-send').disabled = busy;
  $('order-btn').disabled = busy;
  syncTelegramButtons();
}

// ---------------------------------------------------------------------------------------------
// Chat

function authorKind(author) {
  const a = (author || '').toLowerCase();
  if (a.startsWith('польз') || a.startsWith('user') || a === 'вы') return 'me';
  if (a.startsWith('опер') || a.startsWith('operator')) return 'operator';
  return 'bot';
}

function entryKey(kind, text) {
  return `${kind}|${text.trim()}`;
}

// Every bubble carries a time: the log's for entries from the server, the phone's for what is shown now.
function bubble(kind, text, at) {
  const node = el('div', `bubble bubble-${kind}`);
  if (kind === 'operator') node.append(el('div', 'bubble-author', 'Оператор'));
  node.append(el('div', 'bubble-text', text));
  const time = el('time', 'bubble-time', shortTime(at || nowIso()));
  time.dateTime = at || nowIso();
  node.append(time);
  node.dataset.key = entryKey(kind, text);
  return node;
}

// A live `chat` event: a new log entry. The page may already show it (its own message, the answer it got
// back, or a copy after a reconnect): then only the server's time is taken over. `n` tells a repeated
// message (same minute and text) from a copy of the same one.
function addLiveEntry(entry) {
  if (state.historyLoads) state.liveDuringLoad.push(entry);
  const kind = authorKind(entry.author);
  const key = entryKey(kind, entry.text);
  const at = entry.at ?? '';
  const n = String(entry.n ?? 0);
  const log = $('chat-log');
  const shown = [...log.querySelectorAll('.bubble:not(.typing)')].filter((b) => b.dataset.key === key);
  if (shown.some((b) => b.dataset.at === at && b.dataset.n === n)) return; // a copy of one on screen
  const unconfirmed = shown.find((b) => b.dataset.at === undefined && !b.classList.contains('bubble-note'));
  if (unconfirmed) {
    Object.assign(unconfirmed.dataset, { at, n });
    return;
  }
  const node = bubble(kind, entry.text, entry.at);
  Object.assign(node.dataset, { at, n });
  node.classList.add('live');
  const typing = log.querySelector('.typing');
  if (typing) typing.before(node);
  else log.append(node);
  state.seen.add(key);
  hideState($('chat-state'));
  scrollChatToEnd();
}

function scrollChatToEnd() {
  const log = $('chat-log');
  log.scrollTop = log.scrollHeight;
  window.scrollTo(0, document.body.scrollHeight);
}

// The in-work banner sits in the sticky header: visible on every tab, never scrolled away.
function setChatStatus(status) {
  state.chatStatus = status;
  const line = $('chat-status');
  const note = CHAT_STATUS_NOTE[status];
  line.textContent = note ?? '';
  line.hidden = !note;
  line.dataset.status = status || '';
  $('escalate-btn').hidden = !state.escalateOn || status === IN_WORK;
  scheduleChatRefresh();
}

function showChatEmpty() {
  showState($('chat-state'), {
    kind: 'empty',
    title: 'Задайте вопрос ассистенту',
    text: 'Например: «Какая комиссия по вторичке?» или «Какие документы нужны для сделки?». '
      + 'Напишите «оператор», чтобы позвать сотрудника агентства.',
  });
}

function renderHistory(entries) {
  const log = $('chat-log');
  const counts = new Map();
  log.replaceChildren(...entries.map((e) => {
    const node = bubble(authorKind(e.author), e.text, e.at);
    const same = `${node.dataset.key}|${e.at ?? ''}`;
    counts.set(same, (counts.get(same) ?? 0) + 1);
    Object.assign(node.dataset, { at: e.at ?? '', n: String(counts.get(same) - 1) });
    return node;
  }));
  state.historyLoaded = true;
  state.seen = new Set(entries.map((e) => entryKey(authorKind(e.author), e.text)));
  if (!entries.length) showChatEmpty();
  else hideState($('chat-state'));
  scrollChatToEnd();
}

async function loadHistory({ quiet = false } = {}) {
  if (!quiet || !state.historyLoaded) {
    $('chat-log').replaceChildren();
    showState($('chat-state'), { kind: 'loading', text: 'Загружаем переписку…' });
  }
  state.historyLoads += 1;
  try {
    const data = await api('api/chat/history');
    renderHistory(data.entries);
  } catch (err) {
    if (fatal(err)) return;
    showState($('chat-state'), {
      kind: 'error', title: 'Не удалось загрузить переписку', text: err.message, retry: loadHistory,
    });
  } finally {
    state.historyLoads -= 1;
    // Live entries that came while the log was being read may be missing from what was read: add them now.
    if (!state.historyLoads) state.liveDuringLoad.splice(0).forEach(addLiveEntry);
  }
}

// While an operator has the conversation and the live stream is down, re-read the log now and then.
function scheduleChatRefresh() {
  clearTimeout(state.chatTimer);
  if (state.chatStatus === IN_WORK && !state.stream) state.chatTimer = setTimeout(refreshHistory, CHAT_REFRESH_MS);
}

async function refreshHistory() {
  if (document.visibilityState === 'visible' && !state.busy) {
    try {
      const data = await api('api/chat/history');
      // Redraw only when the sheet has something this page has not shown (e.g. an operator's reply).
      if (data.entries.some((e) => !state.seen.has(entryKey(authorKind(e.author), e.text)))) {
        renderHistory(data.entries);
      }
    } catch (err) {
      if (fatal(err)) return;
    }
  }
  scheduleChatRefresh();
}

async function sendMessage() {
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text || state.busy) return;
  hideState($('chat-state'));
  $('chat-error').hidden = true;
  const log = $('chat-log');
  const mine = bubble('me', text);
  mine.classList.add('pending');
  const typing = el('div', 'bubble bubble-bot typing');
  typing.append(el('span'), el('span'), el('span'));
  typing.setAttribute('aria-label', 'Ассистент печатает');
  log.append(mine, typing);
  input.value = '';
  autosize();
  scrollChatToEnd();
  setBusy(true);
  let live = null; // the assistant's bubble, filled in as the answer streams
  try {
    const data = await apiChatStream({ text }, (piece) => {
      if (!live) {
        mine.classList.remove('pending');
        typing.remove();
        live = bubble('bot', '');
        live.classList.add('streaming');
        log.append(live);
      }
      const body = live.querySelector('.bubble-text');
      body.textContent += piece;
      scrollChatToEnd();
    });
    mine.classList.remove('pending');
    typing.remove();
    state.seen.add(entryKey('me', text));
    if (live) {
      live.classList.remove('streaming');
      // The final text wins over what streamed (after a broken stream it carries the operator note).
      if (data.reply) {
        live.querySelector('.bubble-text').textContent = data.reply;
        live.dataset.key = entryKey('bot', data.reply);
        // The live event stream may have brought the same answer first: keep one bubble, with the log's time.
        const twin = [...log.querySelectorAll('.bubble-bot.live')].find(
          (b) => b !== live && b.dataset.key === live.dataset.key && mine.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING,
        );
        if (twin) {
          Object.assign(live.dataset, { at: twin.dataset.at, n: twin.dataset.n });
          const time = twin.querySelector('time');
          if (time) live.querySelector('time').replaceWith(time);
          twin.remove();
        }
      } else live.remove();
    } else if (data.reply && ![...log.querySelectorAll('.bubble-bot')].some((b) => b.dataset.key === entryKey('bot', data.reply))) {
      log.append(bubble('bot', data.reply)); // unless the live stream showed the answer already
    }
    if (data.reply) state.seen.add(entryKey('bot', data.reply));
    setChatStatus(data.status);
    haptic('success');
  } catch (err) {
    typing.remove();
    if (live) live.remove();
    if (!fatal(err)) {
      if (err.code === 'daily_limit') {
        mine.classList.remove('pending'); // the message is in the log; only the assistant is out of answers
        state.seen.add(entryKey('me', text));
      } else {
        mine.remove();
        input.value = input.value || text; // give the text back so nothing typed is lost
        autosize();
      }
      if (!log.children.length) showChatEmpty();
      const box = $('chat-error');
      box.textContent = err.message;
      box.dataset.code = err.code;
      box.hidden = false;
      haptic('error');
    }
  } finally {
    setBusy(false);
    scrollChatToEnd();
  }
}

function autosize() {
  const input = $('chat-input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  syncTelegramButtons();
}

// ---------------------------------------------------------------------------------------------
// Analytics

function badge(status) {
  const info = JOB_STATUS[status] ?? { label: status, tone: 'wait' };
  const node = el('span', `badge badge-${info.tone}`, info.label);
  node.dataset.status = status;
  return node;
}

function renderJobs() {
  const list = $('jobs');
  list.replaceChildren();
  for (const job of state.jobs) {
    const item = el('li', 'job');
    const button = el('button', 'job-btn');
    button.type = 'button';
    button.dataset.id = job.id;
    const head = el('div', 'job-line');
    head.append(el('span', 'job-code', job.object_code), badge(job.status));
    button.append(head);
    let summary = `Запрошено ${shortTime(job.created_at)}`;
    if (job.status === 'DONE' && job.result_text) {
      // The first line repeats the code; the next one describes the object.
      const lines = job.result_text.split('\n').map((l) => l.trim()).filter(Boolean);
      summary = lines.find((l) => !l.includes(job.object_code)) ?? lines[0] ?? summary;
    }
    if (job.status === 'ERROR') summary = job.error || 'Не удалось подготовить отчёт';
    button.append(el('div', 'job-summary muted small', summary));
    button.addEventListener('click', () => openJob(job.id));
    item.append(button);
    list.append(item);
  }
  if (!state.jobs.length) {
    showState($('jobs-state'), {
      kind: 'empty',
      title: 'Запросов пока нет',
      text: 'Введите код объекта агентства — отчёт будет готов через 1–2 минуты.',
    });
  } else {
    hideState($('jobs-state'));
  }
  if (state.openJobId) renderJobDetail();
}

function renderJobDetail() {
  const job = currentJob();
  if (!job) return;
  $('job-code').textContent = `Объект ${job.object_code}`;
  $('job-status').replaceWith(Object.assign(badge(job.status), { id: 'job-status' }));
  const meta = [`Запрошено ${shortTime(job.created_at)}`];
  if (job.finished_at) meta.push(`готово ${shortTime(job.finished_at)}`);
  $('job-meta').textContent = meta.join(' · ');
  const body = $('job-body');
  body.replaceChildren();
  if (job.status === 'DONE') {
    body.append(el('div', 'result-text', job.result_text || 'Отчёт готов.'));
  } else if (job.status === 'ERROR') {
    body.append(el('p', 'form-error', job.error || 'Не удалось подготовить отчёт. Попробуйте заказать его ещё раз.'));
  } else {
    const waiting = el('div', 'state state-loading');
    waiting.append(el('div', 'spinner'), el('p', 'muted', 'Отчёт готовится, обычно это 1–2 минуты. Статус обновится сам.'));
    body.append(waiting);
  }
  const link = $('job-pdf');
  link.hidden = !job.pdf_url;
  if (job.pdf_url) link.href = job.pdf_url;
  syncTelegramButtons();
}

function openPdf(url) {
  const absolute = new URL(url, window.location.href).href;
  if (inTelegram) tg.openLink(absolute);
  else window.open(absolute, '_blank', 'noopener');
}

function schedulePoll() {
  clearTimeout(state.pollTimer);
  state.pollTimer = 0;
  if (state.jobs.some((j) => j.status === 'NEW' || j.status === 'PROCESSING')) {
    state.pollTimer = setTimeout(pollJobs, state.pollDelay);
  }
}

function applyJobs(items) {
  const before = new Map(state.jobs.map((j) => [j.id, j.status]));
  state.jobs = items;
  state.jobsLoaded = true;
  for (const job of items) {
    const was = before.get(job.id);
    if ((was === 'NEW' || was === 'PROCESSING') && job.status === 'DONE') {
      toast(`Отчёт по ${job.object_code} готов`);
      haptic('success');
    } else if ((was === 'NEW' || was === 'PROCESSING') && job.status === 'ERROR') {
      toast(`Отчёт по ${job.object_code} не удался`);
      haptic('error');
    }
  }
  renderJobs();
  schedulePoll();
}

async function loadJobs() {
  showState($('jobs-state'), { kind: 'loading', text: 'Загружаем запросы…' });
  try {
    const data = await api('api/analytics');
    state.pollDelay = POLL_MS;
    applyJobs(data.items);
  } catch (err) {
    if (fatal(err)) return;
    showState($('jobs-state'), { kind: 'error', title: 'Не удалось загрузить запросы', text: err.message, retry: loadJobs });
  }
}

async function pollJobs() {
  if (document.visibilityState === 'hidden') {
    state.pollTimer = setTimeout(pollJobs, state.pollDelay);
    return;
  }
  try {
    const data = await api('api/analytics');
    state.pollDelay = POLL_MS;
    $('poll-note').hidden = true;
    applyJobs(data.items);
  } catch (err) {
    if (fatal(err)) return;
    // Keep the list; say the status may be stale and retry with a growing pause.
    state.pollDelay = Math.min(state.pollDelay * 2, POLL_MAX_MS);
    $('poll-note').textContent = 'Не удалось обновить статус — попробуем ещё раз.';
    $('poll-note').hidden = false;
    schedulePoll();
  }
}

async function orderAnalytics() {
  const input = $('object-code');
  const errorBox = $('order-error');
  const code = input.value.trim();
  errorBox.hidden = true;
  if (!code) {
    errorBox.textContent = 'Введите код объекта, например DEMO-0001.';
    errorBox.hidden = false;
    input.focus();
    return;
  }
  if (state.busy) return;
  setBusy(true);
  try {
    const job = await api('api/analytics', { method: 'POST', body: { object_code: code } });
    input.value = '';
    toast(`Запрос по ${job.object_code ?? code} принят`);
    haptic('success');
    const data = await api('api/analytics');
    applyJobs(data.items);
  } catch (err) {
    if (!fatal(err)) {
      errorBox.textContent = err.message;
      errorBox.dataset.code = err.code;
      errorBox.hidden = false;
      haptic('error');
    }
  } finally {
    setBusy(false);
  }
}

// ---------------------------------------------------------------------------------------------
// «Позвать оператора»

async function callOperator() {
  if (state.busy) return;
  $('chat-error').hidden = true;
  setBusy(true);
  $('escalate-btn').disabled = true;
  try {
    const data = await api('api/escalate', { method: 'POST' });
    hideState($('chat-state'));
    if (data.reply) {
      const note = bubble('bot', data.reply);
      note.classList.add('bubble-note');
      $('chat-log').append(note);
    }
    setChatStatus(data.status);
    haptic('success');
    scrollChatToEnd();
  } catch (err) {
    if (!fatal(err)) {
      const box = $('chat-error');
      box.textContent = err.message;
      box.dataset.code = err.code;
      box.hidden = false;
      haptic('error');
    }
  } finally {
    $('escalate-btn').disabled = false;
    setBusy(false);
  }
}

// ---------------------------------------------------------------------------------------------
// Live events: one fetch-read SSE stream, reconnecting with a growing pause; Last-Event-ID resumes it.

function parseSse(block) {
  const event = { type: 'message', data: '', id: null };
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (field === 'event') event.type = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') event.id = value;
  }
  event.data = data.join('\n');
  return event;
}

function setLiveNote(text) {
  const note = $('live-note');
  note.textContent = text;
  note.hidden = !text;
}

function onLiveEvent(event) {
  let data = {};
  try {
    data = event.data ? JSON.parse(event.data) : {};
  } catch {
    return;
  }
  if (event.id) state.lastEventId = event.id;
  if (event.type === 'ready') {
    state.streamDelay = STREAM_RETRY_MS;
    setLiveNote('');
    setChatStatus(data.status || state.chatStatus);
    if (!data.resumed) {
      // Not a resumption: whatever happened while the page was away is in the lists, read them again.
      if (!state.busy) loadHistory({ quiet: true });
      if (state.jobsLoaded) refreshJobs();
      if (state.promotionsLoaded) loadPromotions();
    }
  } else if (event.type === 'chat') {
    addLiveEntry(data);
  } else if (event.type === 'status') {
    setChatStatus(data.status);
  } else if (event.type === 'analytics') {
    if (state.jobsLoaded || state.openJobId) refreshJobs();
  }
}

async function readStream(controller) {
  const headers = { Authorization: `tma ${initData}`, Accept: 'text/event-stream' };
  if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
  const res = await fetch('api/events', { headers, signal: controller.signal, cache: 'no-store' });
  if (!res.ok) {
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    throw new ApiError(res.status, data?.error?.code ?? `http_${res.status}`, data?.error?.message ?? '');
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      onLiveEvent(parseSse(block));
    }
  }
}

async function openStream() {
  clearTimeout(state.streamTimer);
  if (state.stream) return;
  const controller = new AbortController();
  state.stream = controller;
  clearTimeout(state.chatTimer);
  let failure = null;
  try {
    await readStream(controller);
  } catch (err) {
    failure = err;
  }
  if (state.stream !== controller) return; // closed on purpose
  state.stream = null;
  if (failure instanceof ApiError && failure.status === 401 && devMode) {
    await ensureInitData(true).catch(() => {});
  } else if (failure instanceof ApiError && (failure.status === 401 || failure.status === 403)) {
    fatal(failure);
    return;
  }
  // Reconnect by itself, with a growing pause (and some jitter so many pages do not come back at once).
  const delay = state.streamDelay;
  state.streamDelay = Math.min(state.streamDelay * 2, STREAM_RETRY_MAX_MS);
  if (delay > STREAM_RETRY_MS) setLiveNote('Нет связи — переподключаемся…');
  state.streamTimer = setTimeout(openStream, delay * (0.8 + Math.random() * 0.4));
  scheduleChatRefresh();
}

// ---------------------------------------------------------------------------------------------
// Objects (the agency's catalogue)

function catalogueQuery() {
  const params = new URLSearchParams();
  const q = $('catalogue-q').value.trim();
  if (q) params.set('q', q);
  const district = $('catalogue-district').value;
  if (district) params.set('district', district);
  const rooms = $('catalogue-rooms').value;
  if (rooms === '4+') params.set('rooms_min', '4');
  else if (rooms) params.set('rooms', rooms);
  const min = parseFloat($('catalogue-price-min').value.replace(',', '.'));
  if (Number.isFinite(min) && min >= 0) params.set('price_min', String(Math.round(min * 1e6)));
  const max = parseFloat($('catalogue-price-max').value.replace(',', '.'));
  if (Number.isFinite(max) && max >= 0) params.set('price_max', String(Math.round(max * 1e6)));
  return params.toString();
}

function fillDistricts(districts) {
  const select = $('catalogue-district');
  const current = select.value;
  const known = [...select.options].map((o) => o.value);
  if (known.length === districts.length + 1 && districts.every((d, i) => known[i + 1] === d)) return;
  select.replaceChildren(new Option('Все районы', ''), ...districts.map((d) => new Option(d, d)));
  select.value = districts.includes(current) ? current : '';
}

function objectCard(obj) {
  const item = el('li', 'object');
  item.dataset.code = obj.code;
  const head = el('div', 'object-line');
  head.append(el('span', 'object-code', obj.code), el('span', 'object-price', obj.price != null ? formatRub(obj.price) : obj.price_text));
  const rooms = obj.rooms === 0 ? 'студия' : obj.rooms != null ? `${obj.rooms}-комн.` : obj.rooms_text;
  const area = obj.area != null ? `${String(obj.area).replace('.', ',')} м²` : obj.area_text;
  const facts = [obj.type, rooms, area].filter(Boolean).join(' · ');
  const where = [obj.district, obj.address].filter(Boolean).join(', ');
  const order = el('button', 'btn primary object-order', 'Аналитика 360');
  order.type = 'button';
  order.addEventListener('click', () => orderFromCatalogue(obj.code, order));
  item.append(head, el('div', 'object-facts small', facts), el('div', 'muted small', where), order);
  return item;
}

async function loadCatalogue() {
  const seq = ++state.catalogueSeq;
  const list = $('catalogue-list');
  if (!state.catalogueLoaded) showState($('catalogue-state'), { kind: 'loading', text: 'Загружаем объекты…' });
  try {
    const query = catalogueQuery();
    const data = await api(`api/objects${query ? `?${query}` : ''}`);
    if (seq !== state.catalogueSeq) return; // a newer search is on its way
    state.catalogueLoaded = true;
    fillDistricts(data.districts);
    list.replaceChildren(...data.items.map(objectCard));
    const count = $('catalogue-count');
    count.textContent = data.total > data.items.length
      ? `Найдено ${data.total}, показаны первые ${data.items.length}`
      : `Найдено: ${data.total}`;
    count.hidden = false;
    if (!data.items.length) {
      showState($('catalogue-state'), { kind: 'empty', title: 'Ничего не найдено', text: 'Измените поиск или фильтры.' });
    } else {
      hideState($('catalogue-state'));
    }
  } catch (err) {
    if (fatal(err) || seq !== state.catalogueSeq) return;
    showState($('catalogue-state'), { kind: 'error', title: 'Не удалось загрузить объекты', text: err.message, retry: loadCatalogue });
  }
}

function searchSoon() {
  clearTimeout(state.catalogueTimer);
  state.catalogueTimer = setTimeout(loadCatalogue, SEARCH_DEBOUNCE_MS);
}

// One tap: the request is queued and its card opens; the report fills in by itself when ready.
async function orderFromCatalogue(code, button) {
  if (state.busy) return;
  setBusy(true);
  button.disabled = true;
  try {
    const job = await api('api/analytics', { method: 'POST', body: { object_code: code } });
    toast(`Запрос по ${job.object_code ?? code} принят`);
    haptic('success');
    const data = await api('api/analytics');
    applyJobs(data.items);
    showTab('analytics');
    openJob(job.id);
  } catch (err) {
    if (!fatal(err)) {
      toast(err.message);
      haptic('error');
    }
  } finally {
    button.disabled = false;
    setBusy(false);
  }
}

async function refreshJobs() {
  try {
    const data = await api('api/analytics');
    applyJobs(data.items);
  } catch (err) {
    fatal(err);
  }
}

// ---------------------------------------------------------------------------------------------
// Promotions

async function loadPromotions() {
  const list = $('promotions');
  if (!state.promotionsLoaded) showState($('promotions-state'), { kind: 'loading', text: 'Загружаем акции…' });
  try {
    const data = await api('api/promotions');
    state.promotionsLoaded = true;
    list.replaceChildren(...data.items.map((p) => {
      const item = el('li', 'card promotion');
      if (p.picture) {
        const img = el('img', 'promotion-picture');
        img.src = p.picture;
        img.alt = p.title || 'Акция';
        img.loading = 'lazy';
        img.referrerPolicy = 'no-referrer';
        img.addEventListener('error', () => img.remove());
        item.append(img);
      }
      if (p.title) item.append(el('h3', 'promotion-title', p.title));
      if (p.text) item.append(el('p', 'promotion-text', p.text));
      const time = el('time', 'muted small promotion-time', `Отправлено ${shortTime(p.sent_at)}`);
      time.dateTime = p.sent_at;
      item.append(time);
      return item;
    }));
    if (!data.items.length) {
      showState($('promotions-state'), {
        kind: 'empty', title: 'Акций пока не было', text: 'Новые акции агентства приходят сообщением в чат с ботом и появляются здесь.',
      });
    } else {
      hideState($('promotions-state'));
    }
  } catch (err) {
    if (fatal(err)) return;
    showState($('promotions-state'), { kind: 'error', title: 'Не удалось загрузить акции', text: err.message, retry: loadPromotions });
  }
}

// ---------------------------------------------------------------------------------------------
// Start

function greet() {
  let user = inTelegram ? tg.initDataUnsafe?.user : null;
  if (!user && initData) {
    try {
      user = JSON.parse(new URLSearchParams(initData).get('user'));
    } catch {
      user = null;
    }
  }
  if (user?.first_name) $('whoami').textContent = [user.first_name, user.last_name].filter(Boolean).join(' ');
}

function wire() {
  for (const button of document.querySelectorAll('.tab')) {
    button.addEventListener('click', () => {
      if (button.dataset.tab !== state.tab || state.openJobId) {
        haptic('select');
        showTab(button.dataset.tab);
      }
    });
  }
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sendMessage();
  });
  $('chat-input').addEventListener('input', autosize);
  $('chat-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendMessage();
    }
  });
  $('analytics-form').addEventListener('submit', (e) => {
    e.preventDefault();
    orderAnalytics();
  });
  $('object-code').addEventListener('input', () => {
    $('order-error').hidden = true;
    syncTelegramButtons();
  });
  $('job-back').addEventListener('click', closeJob);
  $('escalate-btn').addEventListener('click', callOperator);
  $('catalogue-form').addEventListener('submit', (e) => {
    e.preventDefault();
    loadCatalogue();
  });
  for (const id of ['catalogue-q', 'catalogue-price-min', 'catalogue-price-max']) $(id).addEventListener('input', searchSoon);
  for (const id of ['catalogue-district', 'catalogue-rooms']) $(id).addEventListener('change', loadCatalogue);
  $('job-pdf').addEventListener('click', (e) => {
    if (!inTelegram) return; // a plain link in a browser
    e.preventDefault();
    openPdf($('job-pdf').getAttribute('href'));
  });
  $('fatal-retry').addEventListener('click', () => window.location.reload());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.pollTimer) {
      clearTimeout(state.pollTimer);
      pollJobs();
    }
  });
  if (inTelegram) {
    tg.MainButton.onClick(mainAction);
    tg.BackButton.onClick(closeJob);
  }
}

async function start() {
  if (document.body.dataset.promotions === 'on') $('tab-promotions').hidden = false;
  state.liveOff = document.body.dataset.live !== 'on';
  $('tab-catalogue').hidden = document.body.dataset.catalogue !== 'on';
  $('escalate-btn').hidden = document.body.dataset.escalate !== 'on';
  state.escalateOn = document.body.dataset.escalate === 'on';
  if (inTelegram) {
    document.body.classList.add('tg');
    tg.ready();
    tg.expand();
  }
  wire();
  try {
    await ensureInitData();
  } catch {
    /* handled below as "no initData" */
  }
  if (!initData) {
    fatal(new ApiError(401, 'unauthorized', 'Эта страница работает внутри Telegram: откройте её кнопкой «Открыть» в чате с ботом.'));
    return;
  }
  greet();
  showTab('chat');
  // The stream's first event (`ready`) brings the status and triggers the history load, so nothing written
  // between the two is missed; the history is loaded directly too, in case the stream cannot connect.
  if (!state.liveOff) openStream();
  await loadHistory({ quiet: true });
}

start();
