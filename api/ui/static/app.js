// tdf dashboard: plain JavaScript, no framework, no build step.
//
// Every element is built with the DOM API (see h below) and every piece of
// data is inserted as a text node or an attribute value, never as markup.
// The page talks only to the node that served it: GET /v1/cluster (every
// few seconds), /v1/tasks (once, then live from /v1/events), /v1/tasks/{id},
// /v1/nodes, /v1/errors. When the API wants tokens it first asks for one
// (GET /v1/whoami says; see "authentication" below).
'use strict';

(function () {
  // ---- constants ----------------------------------------------------------

  // The execution steps in order, from the binary's step table (steps.js).
  const STEPS = window.TDF_STEPS;
  const STEP_INDEX = new Map(STEPS.map((s, i) => [s.id, i]));
  const KIND_TEXT = { decided: 'decided in Apply', effect: 'calls out, then commits', waiting: 'waits for a callback' };
  const STATUSES = ['draft', 'ready', 'queued', 'delegated', 'in_progress', 'completed', 'failed', 'cancelled'];
  const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
  const NODE_STATUSES = ['active', 'warm', 'destroying', 'deleted'];
  const ERROR_KINDS = ['step_error', 'task_failed', 'fenced', 'sweeper', 'cleanup', 'node_error', 'reconciler', 'recovered', 'push_failed'];
  const VIEWS = ['tasks', 'cluster', 'nodes', 'errors'];
  const PAGE = 500; // the API's largest page (the list is newest first)
  // The task list's "submitted" filter: seconds back from now.
  const SINCE = [['', 'any time'], ['3600', 'last hour'], ['86400', 'last day'], ['604800', 'last week']];
  const MAX_PAGES = 20; // tasks and error records read at most (10 000)
  const ROWS = 200; // table rows shown before "show more"
  // Members' health is shown within about two heartbeat timeouts (0.6 s).
  const CLUSTER_EVERY = 500;
  const NODES_EVERY = 5000;
  const ERRORS_EVERY = 5000;

  // ---- state --------------------------------------------------------------

  const state = {
    tasks: new Map(), // id → task, kept current by the event stream
    tasksLoaded: false,
    tasksTruncated: false,
    tasksError: '',
    touched: null, // ids changed by events while a list read is in flight
    stepSeen: new Map(), // "id step" → time (ms) the step was seen entered, live
    cluster: null,
    clusterError: '',
    clusterAt: 0,
    ready: null, // the local /readyz answer: true, false or null (unknown)
    // writeIndex is the raft index of this page's last write
    // (X-Tdf-Index): reads of replicated state pass it as ?index= so
    // that they never miss what the page itself just did.
    writeIndex: 0,
    nodes: null,
    nodesError: '',
    skew: null, // server clock minus browser clock, ms (from event times)
    rows: ROWS,
    stats: { listLoads: 0, taskEvents: 0, nodeEvents: 0, resets: 0, reconnects: 0 },
    trails: new Map(), // id → the statuses the event stream brought, in order
  };
  // Exposed for debugging and for the browser test.
  window.tdf = { stats: state.stats, trail: (id) => state.trails.get(id) || [] };

  let view = null; // the mounted view: { update(what), unmount() }

  // ---- DOM helpers --------------------------------------------------------

  // h builds an element. props: "class", "style" (an object, set through
  // the CSSOM), "on<event>" handlers, everything else an attribute. Children
  // may be nodes, strings (inserted as text), arrays, or null/false (skipped).
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'style') for (const [p, x] of Object.entries(v)) el.style.setProperty(p, x);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    add(el, kids);
    return el;
  }

  function add(el, ...kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return el;
  }

  // fill replaces an element's children, with add's rules for them.
  function fill(el, ...kids) {
    el.replaceChildren();
    return add(el, ...kids);
  }

  // keyedRows shows items as rows of tbody, reusing the row of an item
  // whose signature has not changed and moving rather than rebuilding, so
  // that a row under the pointer survives the events about other rows.
  function keyedRows(tbody, cache, items, key, sig, render) {
    const want = [];
    const keep = new Set();
    for (const it of items) {
      const k = key(it);
      const s = sig(it);
      let c = cache.get(k);
      if (!c || c.sig !== s) {
        c = { sig: s, row: render(it) };
        cache.set(k, c);
      }
      keep.add(k);
      want.push(c.row);
    }
    for (const k of [...cache.keys()]) if (!keep.has(k)) cache.delete(k);
    want.forEach((row, i) => {
      if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
    });
    while (tbody.children.length > want.length) tbody.lastChild.remove();
  }

  const $ = (sel, root) => (root || document).querySelector(sel);
  const badge = (text, cls) => h('span', { class: 'badge ' + (cls || '') }, text);
  const statusBadge = (s) => badge(s ? s.replace('_', ' ') : 'submitted', 's-' + (s || 'none'));
  const taskHref = (id) => '#/tasks/' + encodeURIComponent(id);
  const taskLink = (id) => (id ? h('a', { href: taskHref(id), class: 'mono' }, id) : '—');
  const dash = (v) => (v === undefined || v === null || v === '' ? '—' : v);

  // safeURL returns u if it is an absolute http(s) URL, else ''.
  function safeURL(u) {
    try {
      const p = new URL(u);
      return p.protocol === 'http:' || p.protocol === 'https:' ? p.href : '';
    } catch {
      return '';
    }
  }

  // ---- time ---------------------------------------------------------------

  const ms = (iso) => (iso ? Date.parse(iso) : NaN);
  // now is the server's clock as well as the browser can tell.
  const now = () => Date.now() + (state.skew || 0);

  function noteServerTime(iso) {
    const t = ms(iso);
    if (!isFinite(t)) return;
    const s = t - Date.now();
    state.skew = state.skew === null ? s : 0.8 * state.skew + 0.2 * s;
  }

  function fmtDur(d) {
    if (!isFinite(d)) return '—';
    d = Math.max(0, d);
    if (d < 1000) return Math.round(d) + ' ms';
    if (d < 10000) return (d / 1000).toFixed(2) + ' s';
    if (d < 60000) return (d / 1000).toFixed(1) + ' s';
    const s = Math.round(d / 1000);
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function fmtClock(t) {
    const d = new Date(t);
    const pad = (n, w) => String(n).padStart(w || 2, '0');
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + '.' + pad(d.getMilliseconds(), 3);
  }

  function fmtAgo(t) {
    const d = now() - t;
    if (Math.abs(d) < 1000) return 'just now';
    return d > 0 ? fmtDur(d) + ' ago' : 'in ' + fmtDur(-d);
  }

  function fmtDue(t) {
    const d = t - now();
    return d >= 0 ? 'in ' + fmtDur(d) : fmtDur(-d) + ' overdue';
  }

  const REL = { ago: fmtAgo, due: fmtDue, elapsed: (t) => fmtDur(now() - t) };

  // timeEl shows a time relative to now, kept current by the ticker; the
  // exact time is in the title and the datetime attribute.
  function timeEl(iso, mode) {
    const t = ms(iso);
    if (!isFinite(t)) return '—';
    return h('time', { datetime: iso, title: new Date(t).toLocaleString(), 'data-rel': mode || 'ago', 'data-t': t }, REL[mode || 'ago'](t));
  }

  function tick() {
    for (const el of document.querySelectorAll('[data-rel]')) {
      const f = REL[el.getAttribute('data-rel')];
      const t = Number(el.getAttribute('data-t'));
      if (f && isFinite(t)) el.textContent = f(t);
    }
  }

  // ---- API ----------------------------------------------------------------

  const base = new URL('../', location.href); // the dashboard lives at <base>ui/
  const apiURL = (path) => new URL(path, base).href;

  // ---- authentication -----------------------------------------------------
  //
  // With API tokens configured, the page asks for one and keeps it in
  // sessionStorage (this tab only, gone when it closes); every request
  // sends it as a bearer token. EventSource cannot send headers, so before
  // each connection the page trades the token for a short-lived HttpOnly
  // cookie that only GET /v1/events accepts (POST /v1/session).

  const TOKEN_KEY = 'tdf.token';
  // A sign-in link (tdf dev prints one) carries the token in the URL's
  // fragment, which the browser never sends: keep it for this tab and
  // take it out of the address bar and history at once.
  if (location.hash.startsWith('#token=')) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice('#token='.length)));
    history.replaceState(null, '', location.pathname + location.search);
  }
  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  const auth = { on: false, subject: '', scope: 'admin' };
  const authHeaders = (extra) => Object.assign({}, extra || {}, token ? { Authorization: 'Bearer ' + token } : {});

  // signOut forgets the token and shows the sign-in form again.
  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (message) sessionStorage.setItem(TOKEN_KEY + '.msg', message);
    fetch(apiURL('v1/session'), { method: 'DELETE', headers: authHeaders() }).finally(() => location.reload());
  }

  function showLogin(message) {
    if (events) events.close();
    const input = h('input', { type: 'password', id: 'login-token', name: 'token', autocomplete: 'current-password', required: true, 'aria-describedby': 'login-help' });
    const form = h('form', {
      class: 'panel login', id: 'login',
      onsubmit: (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        sessionStorage.removeItem(TOKEN_KEY + '.msg');
        location.reload();
      },
    },
    h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'notice bad', id: 'login-error', role: 'alert' }, message) : null,
    h('label', { for: 'login-token' }, 'API token'),
    input,
    h('p', { class: 'hint', id: 'login-help' }, 'An admin token sees everything; a user token sees only its own tasks. The token is kept in this tab only.'),
    h('button', { type: 'submit' }, 'Sign in'));
    fill($('#view'), form);
    fill($('#cluster-strip'));
    setConn('down', 'signed out');
    input.focus();
  }

  function renderWho() {
    if (!auth.on) return;
    const who = h('p', { class: 'who', id: 'who' },
      h('span', { class: 'mono', id: 'who-subject' }, auth.subject), ' ', badge(auth.scope, 'scope-' + auth.scope), ' ',
      h('button', { type: 'button', id: 'sign-out', onclick: () => signOut('') }, 'Sign out'));
    $('header.top').appendChild(who);
  }

  // withIndex adds the page's last write index to a read of replicated
  // state.
  function withIndex(path) {
    if (!state.writeIndex || !/^v1\/(tasks|nodes|errors|costs)/.test(path)) return path;
    return path + (path.includes('?') ? '&' : '?') + 'index=' + state.writeIndex;
  }

  // noteWrite keeps the index a write answered with.
  function noteWrite(res) {
    const idx = Number(res.headers.get('X-Tdf-Index') || 0);
    if (idx > state.writeIndex) state.writeIndex = idx;
  }

  async function api(path) {
    const res = await fetch(apiURL(withIndex(path)), { headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' });
    if (res.status === 401 && auth.on) signOut('The API refused the token; sign in again.');
    let body = null;
    try {
      body = await res.json();
    } catch {
      // not JSON: reported below by status
    }
    if (!res.ok) {
      const msg = body && body.error && body.error.message ? body.error.message : res.status + ' ' + res.statusText;
      throw new Error(msg);
    }
    return body;
  }

  // normalize gives a task from the event stream the list shape.
  function normalize(t) {
    t.history = t.history || [];
    t.steps = t.steps || [];
    t.output = t.output || {};
    return t;
  }

  async function loadTasks() {
    state.stats.listLoads++;
    const touched = new Set();
    state.touched = touched;
    const fresh = new Map();
    try {
      let cursor = '';
      let pages = 0;
      do {
        const body = await api('v1/tasks?order=desc&limit=' + PAGE + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
        for (const t of body.tasks || []) fresh.set(t.id, normalize(t));
        cursor = body.next_cursor || '';
        pages++;
      } while (cursor && pages < MAX_PAGES);
      // A task changed by an event during the read is at least as new as
      // the list's copy.
      for (const id of touched) if (state.tasks.has(id)) fresh.set(id, state.tasks.get(id));
      state.tasks = fresh;
      state.tasksLoaded = true;
      state.tasksTruncated = cursor !== '';
      state.tasksError = '';
    } catch (e) {
      state.tasksError = 'Cannot read the task list: ' + e.message;
    } finally {
      if (state.touched === touched) state.touched = null;
    }
    changed('tasks');
  }

  async function loadCluster() {
    try {
      state.cluster = await api('v1/cluster');
      state.clusterError = '';
      state.clusterAt = Date.now();
    } catch (e) {
      state.clusterError = e.message;
    }
    try {
      const res = await fetch(apiURL('readyz'), { cache: 'no-store' });
      state.ready = res.ok;
    } catch {
      state.ready = null;
    }
    renderStrip();
    changed('cluster');
  }

  async function loadNodes() {
    try {
      const body = await api('v1/nodes');
      state.nodes = body.nodes || [];
      state.nodesError = '';
    } catch (e) {
      state.nodesError = 'Cannot read the nodes: ' + e.message;
    }
    changed('nodes');
  }

  // throttle runs f at once, then at most once per wait ms: calls during
  // the wait are folded into one run at its end.
  function throttle(f, wait) {
    let timer = null;
    let again = false;
    const run = () => {
      again = false;
      f();
      timer = setTimeout(() => {
        timer = null;
        if (again) run();
      }, wait);
    };
    return () => {
      if (timer) again = true;
      else run();
    };
  }
  const loadNodesSoon = throttle(loadNodes, 500);

  // ---- the event stream ---------------------------------------------------

  let events = null;
  let reloadOnOpen = true; // the list must be (re-)read once the stream is open
  let eventsBackoff = 1000;
  let reconnecting = 0;

  function setConn(st, text) {
    const el = $('#conn');
    el.setAttribute('data-state', st);
    $('#conn-text').textContent = text;
  }

  async function connectEvents() {
    setConn('connecting', 'connecting…');
    if (auth.on) {
      // A fresh event-stream cookie for this connection (see above).
      try {
        const res = await fetch(apiURL('v1/session'), { method: 'POST', headers: authHeaders(), cache: 'no-store' });
        if (res.status === 401) {
          signOut('The API refused the token; sign in again.');
          return;
        }
      } catch {
        // unreachable: the stream's own error path retries
      }
    }
    const es = new EventSource(apiURL('v1/events'));
    events = es;
    es.onopen = () => {
      eventsBackoff = 1000;
      clearTimeout(reconnecting);
      setConn('live', 'live');
      if (reloadOnOpen) {
        reloadOnOpen = false;
        loadTasks();
        loadNodes();
      }
    };
    es.addEventListener('task', onTaskEvent);
    es.addEventListener('node', (ev) => {
      state.stats.nodeEvents++;
      try {
        noteServerTime(JSON.parse(ev.data).at);
      } catch {
        // ignore a malformed event
      }
      loadNodesSoon();
    });
    es.addEventListener('reset', () => {
      // The node no longer has every change since our last event.
      state.stats.resets++;
      loadTasks();
      loadNodes();
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (an error answer): start over, and re-read
        // the list, since a new stream has no Last-Event-ID.
        es.close();
        state.stats.reconnects++;
        reloadOnOpen = true;
        setConn('down', 'disconnected; retrying');
        setTimeout(connectEvents, eventsBackoff);
        eventsBackoff = Math.min(eventsBackoff * 2, 15000);
      } else {
        // The browser reconnects by itself, resuming with Last-Event-ID.
        // A node restarting or a network blip ends a stream; a quick
        // reconnection is routine and not worth a flicker.
        clearTimeout(reconnecting);
        reconnecting = setTimeout(() => setConn('connecting', 'reconnecting…'), 2000);
      }
    };
  }

  function onTaskEvent(ev) {
    state.stats.taskEvents++;
    let e;
    try {
      e = JSON.parse(ev.data);
    } catch {
      return;
    }
    const t = e && e.task;
    if (!t || !t.id) return;
    noteServerTime(e.at);
    const prev = state.tasks.get(t.id);
    const at = isFinite(ms(e.at)) ? ms(e.at) : Date.now();
    if (t.execution_step && (!prev || prev.execution_step !== t.execution_step)) {
      const key = t.id + ' ' + t.execution_step;
      if (!state.stepSeen.has(key)) state.stepSeen.set(key, at);
    }
    const trail = state.trails.get(t.id) || [];
    if (trail[trail.length - 1] !== t.status) state.trails.set(t.id, trail.concat(t.status));
    // An event carries what changed, not the task: merge it into the copy
    // we have, and read a task we have never seen.
    state.tasks.set(t.id, applyChange(prev || normalize({ id: t.id }), t));
    if (!prev) fetchTask(t.id);
    if (state.touched) state.touched.add(t.id);
    changed('tasks', t.id);
  }

  // The fields a task event carries (the API's TaskChange); absent ones
  // are empty.
  const CHANGE_KEYS = ['project_id', 'user_id', 'status', 'execution_step', 'node_id', 'workspace_id',
    'error_message', 'cleanup', 'attempts', 'updated_at'];

  function applyChange(task, change) {
    const t = Object.assign({}, task);
    for (const k of CHANGE_KEYS) {
      if (k in change) t[k] = change[k];
      else delete t[k];
    }
    return t;
  }

  // fetchTask reads one task whole (once at a time per task) and keeps the
  // newer of it and what events brought meanwhile.
  const fetching = new Set();
  async function fetchTask(id) {
    if (fetching.has(id)) return;
    fetching.add(id);
    try {
      const full = normalize((await api('v1/tasks/' + encodeURIComponent(id))).task);
      const cur = state.tasks.get(id);
      state.tasks.set(id, cur && ms(cur.updated_at) > ms(full.updated_at) ? applyChange(full, cur) : full);
      changed('tasks', id);
    } catch {
      // the list's next read brings it
    } finally {
      fetching.delete(id);
    }
  }

  // ---- rendering: scheduling ----------------------------------------------

  const pending = new Set();
  let frame = 0;

  // changed asks the mounted view to redraw what depends on kind, once per
  // animation frame however many events arrive.
  function changed(kind, id) {
    pending.add(kind);
    if (id) pending.add(kind + ':' + id);
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const what = new Set(pending);
      pending.clear();
      if (view) view.update(what);
    });
  }

  // ---- cluster strip ------------------------------------------------------

  function clusterHealth() {
    const c = state.cluster;
    if (!c || (state.clusterError && Date.now() - state.clusterAt > 2 * CLUSTER_EVERY)) {
      return { text: 'unreachable', cls: 'h-unhealthy', why: state.clusterError || 'no answer yet' };
    }
    if (!c.leader_id) return { text: 'no leader', cls: 'h-unhealthy', why: 'no leader is known: writes are held, then refused' };
    const members = c.members || [];
    const missing = members.filter((m) => !m.api_addr).map((m) => m.id);
    const lag = Math.max(0, (c.commit_index || 0) - (c.applied_index || 0));
    if (state.ready === false) return { text: 'not ready', cls: 'h-unhealthy', why: '/readyz answers 503' };
    if (lag > 1000) return { text: 'catching up', cls: 'h-stale', why: lag + ' committed entries not yet applied here' };
    if (missing.length) return { text: 'degraded', cls: 'h-stale', why: 'no API address for ' + missing.join(', ') + ': requests cannot be forwarded there' };
    const sick = members.filter((m) => m.health && !m.health.healthy);
    if (sick.length) return { text: 'degraded', cls: 'h-stale', why: sick.map((m) => m.id + ' unhealthy: ' + m.health.reason).join('; ') + ' (the leader\'s view)' };
    return { text: 'healthy', cls: 'h-healthy', why: 'leader ' + c.leader_id + ', ' + members.length + ' members, applied lag ' + lag };
  }

  function stat(label, value, sub, attrs) {
    return h('dl', Object.assign({ class: 'stat' }, attrs || {}), h('dt', null, label), h('dd', null, value, sub ? [' ', h('span', { class: 'sub' }, sub)] : null));
  }

  function renderStrip() {
    const c = state.cluster || {};
    const health = clusterHealth();
    const voters = (c.members || []).filter((m) => m.voter).length;
    const lag = Math.max(0, (c.commit_index || 0) - (c.applied_index || 0));
    fill($('#cluster-strip'),
      stat('This node', dash(c.node_id), c.state || '', { id: 'strip-node' }),
      stat('Leader', c.leader_id || 'none', null, { id: 'strip-leader' }),
      stat('Term', dash(c.term)),
      stat('Commit index', dash(c.commit_index)),
      stat('Applied index', dash(c.applied_index), c.node_id ? 'lag ' + lag : ''),
      stat('Members', c.members ? String(c.members.length) : '—', c.members ? voters + ' voters' : ''),
      stat('Health', h('span', { class: 'badge ' + health.cls, title: health.why }, health.text), null, { id: 'strip-health' }),
    );
  }

  // memberHealthCells shows the leader's view of a member: health (the
  // reason as a tooltip and beside it), last contact and log lag.
  function memberHealthCells(m) {
    const hl = m.health;
    if (!hl) return [h('td', { class: 'muted', 'data-health': 'unknown' }, 'unknown'), h('td', null, '—'), h('td', null, '—')];
    return [
      h('td', { 'data-health': hl.healthy ? 'healthy' : 'unhealthy' },
        badge(hl.healthy ? 'healthy' : 'unhealthy', hl.healthy ? 'h-healthy' : 'h-unhealthy'),
        hl.healthy ? null : h('span', { class: 'small muted' }, ' ' + hl.reason)),
      h('td', { class: 'mono' }, hl.last_contact_seconds.toFixed(3) + ' s'),
      h('td', { class: 'mono' }, String(hl.lag)),
    ];
  }

  // ---- router -------------------------------------------------------------

  function parseRoute() {
    const raw = location.hash.replace(/^#\/?/, '');
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    const parts = path.split('/').filter(Boolean).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
    let name = VIEWS.includes(parts[0]) ? parts[0] : 'tasks';
    if (name === 'tasks' && parts[1]) return { name: 'task', id: parts[1], params };
    return { name, id: '', params };
  }

  // setParams records a view's filters in the address without a reload.
  function setParams(name, params) {
    const qs = params.toString();
    history.replaceState(null, '', '#/' + name + (qs ? '?' + qs : ''));
  }

  function route() {
    const r = parseRoute();
    for (const a of document.querySelectorAll('.top nav a')) {
      const on = a.getAttribute('data-view') === (r.name === 'task' ? 'tasks' : r.name);
      if (on) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (view) view.unmount();
    const main = $('#view');
    fill(main);
    const mount = { tasks: tasksView, task: taskView, cluster: clusterView, nodes: nodesView, errors: errorsView }[r.name];
    view = mount(main, r);
    view.update(new Set(['tasks', 'cluster', 'nodes']));
    document.title = (r.name === 'task' ? r.id : r.name[0].toUpperCase() + r.name.slice(1)) + ' · tdf dashboard';
  }

  function field(label, control) {
    return h('label', { class: 'field' }, label, control);
  }

  function notice(text, bad) {
    return text ? h('p', { class: 'notice' + (bad ? ' bad' : ''), role: 'alert' }, text) : null;
  }

  // ---- tasks view ---------------------------------------------------------

  // stepStates says, for each execution step, where the task's run is:
  // done, current (an effect step), waiting (a waiting step), failed,
  // stopped (the run was cancelled there), pending or skipped.
  function stepStates(t) {
    const cur = STEP_INDEX.has(t.execution_step) ? STEP_INDEX.get(t.execution_step) : -1;
    return STEPS.map((s, i) => {
      if (t.status === 'completed') return 'done';
      if (cur >= 0) {
        if (i < cur) return 'done';
        if (i > cur) return 'pending';
        return s.kind === 'waiting' ? 'waiting' : 'current';
      }
      if (!TERMINAL.has(t.status)) return 'pending';
      const end = endStep(t);
      if (i < end) return 'done';
      if (i > end) return 'skipped';
      return t.status === 'failed' ? 'failed' : 'stopped';
    });
  }

  // endStep finds the step an ended run stopped at.
  function endStep(t) {
    for (let i = t.history.length - 1; i >= 0; i--) {
      const e = t.history[i];
      if (e.to !== t.status) continue;
      const m = /^([a-z_]+) failed$/.exec(e.reason || '');
      if (m && STEP_INDEX.has(m[1])) return STEP_INDEX.get(m[1]);
      break;
    }
    const runs = t.steps.filter((a) => STEP_INDEX.has(a.step));
    if (!runs.length) return 0;
    const last = runs[runs.length - 1];
    const i = STEP_INDEX.get(last.step);
    // A successful last attempt means the run had moved on to the next step.
    return last.outcome === 'success' && i + 1 < STEPS.length ? i + 1 : i;
  }

  function stepCell(t) {
    const states = stepStates(t);
    const cells = h('span', { class: 'progress', 'aria-hidden': 'true' },
      states.map((s) => h('i', { class: s === 'waiting' ? 'current' : s })));
    const done = states.filter((s) => s === 'done').length;
    let label = t.execution_step ? t.execution_step.replace(/_/g, ' ') : TERMINAL.has(t.status) ? '' : '—';
    if (t.cleanup === 'pending') label = 'cleanup';
    return h('td', { class: 'nowrap', title: done + ' of ' + STEPS.length + ' steps done' }, cells, h('span', { class: 'sr-only' }, done + ' of ' + STEPS.length + ' steps done; '), label);
  }

  function taskRow(t) {
    const created = ms(t.created_at);
    const ended = TERMINAL.has(t.status) && t.completed_at;
    const dur = ended
      ? fmtDur(ms(t.completed_at) - created)
      : h('span', { 'data-rel': 'elapsed', 'data-t': created }, fmtDur(now() - created));
    return h('tr', {
      class: 'clickable', 'data-task-id': t.id, 'data-status': t.status, 'data-step': t.execution_step || '',
      onclick: (ev) => {
        if (!ev.target.closest('a')) location.hash = taskHref(t.id);
      },
    },
    h('td', null, h('a', { href: taskHref(t.id), class: 'mono' }, t.id), h('span', { class: 'small muted ellipsis', title: t.prompt }, t.prompt)),
    h('td', null, statusBadge(t.status),
      t.error_message ? h('span', { class: 'small bad ellipsis task-error', title: t.error_message }, t.error_message) : null),
    stepCell(t),
    h('td', null, t.user_id, h('span', { class: 'small muted ellipsis' }, t.project_id)),
    h('td', null, h('span', { class: 'ellipsis' }, t.repository), t.branch ? h('span', { class: 'small muted' }, t.branch) : null),
    h('td', null, t.node_id ? h('span', { class: 'mono ellipsis id', title: t.node_id }, t.node_id) : '—'),
    h('td', { class: 'num' }, String(t.attempts || 0)),
    h('td', null, timeEl(t.created_at)),
    h('td', { class: 'num' }, dur));
  }

  function tasksView(main, r) {
    let status = STATUSES.includes(r.params.get('status')) ? r.params.get('status') : '';
    let search = r.params.get('q') || '';
    let user = r.params.get('user') || '';
    let project = r.params.get('project') || '';
    let since = SINCE.some((o) => o[0] === r.params.get('since')) ? r.params.get('since') : '';
    const userInput = h('input', { type: 'search', id: 'user-filter', name: 'user', placeholder: 'any', value: user, size: 10 });
    const projectInput = h('input', { type: 'search', id: 'project-filter', name: 'project', placeholder: 'any', value: project, size: 10 });
    const sinceSelect = h('select', { id: 'since-filter', name: 'since' }, SINCE.map(([v, label]) => h('option', { value: v }, label)));
    sinceSelect.value = since;
    const select = h('select', { id: 'status-filter', name: 'status' },
      h('option', { value: '' }, 'all'), STATUSES.map((s) => h('option', { value: s }, s.replace('_', ' '))));
    select.value = status;
    const input = h('input', { type: 'search', id: 'task-search', name: 'q', placeholder: 'id, user, project, repository, node', value: search });
    const count = h('span', { class: 'muted', id: 'task-count' });
    const notes = h('div');
    const tbody = h('tbody', { id: 'task-rows' });
    const rowCache = new Map();
    const more = h('div', { class: 'more', hidden: true });
    const table = h('table', { id: 'tasks-table' },
      h('caption', { class: 'sr-only' }, 'Tasks, newest first'),
      h('thead', null, h('tr', null, ['Task', 'Status', 'Step', 'User', 'Repository', 'Node', 'Attempts', 'Submitted', 'Duration']
        .map((c) => h('th', { scope: 'col', class: c === 'Attempts' || c === 'Duration' ? 'num' : null }, c)))),
      tbody);
    const params = () => {
      const p = new URLSearchParams();
      if (status) p.set('status', status);
      if (search) p.set('q', search);
      if (user) p.set('user', user);
      if (project) p.set('project', project);
      if (since) p.set('since', since);
      return p;
    };
    const refilter = () => {
      user = userInput.value.trim();
      project = projectInput.value.trim();
      since = sinceSelect.value;
      state.rows = ROWS;
      setParams('tasks', params());
      draw();
    };
    userInput.addEventListener('input', refilter);
    projectInput.addEventListener('input', refilter);
    sinceSelect.addEventListener('change', refilter);
    select.addEventListener('change', () => {
      status = select.value;
      state.rows = ROWS;
      setParams('tasks', params());
      draw();
    });
    input.addEventListener('input', () => {
      search = input.value.trim();
      state.rows = ROWS;
      setParams('tasks', params());
      draw();
    });
    add(main,
      h('div', { class: 'view-head' }, h('h2', null, 'Tasks'), count, h('span', { class: 'spacer' }),
        h('div', { class: 'filters', role: 'search' }, field('Status', select), field('User', userInput),
          field('Project', projectInput), field('Submitted', sinceSelect), field('Search', input))),
      notes,
      h('div', { class: 'panel flush' }, table, more));

    function matches(t) {
      if (status && t.status !== status) return false;
      if (user && t.user_id !== user) return false;
      if (project && t.project_id !== project) return false;
      if (since && ms(t.created_at) < now() - Number(since) * 1000) return false;
      if (!search) return true;
      const q = search.toLowerCase();
      return [t.id, t.user_id, t.project_id, t.repository, t.node_id, t.branch].some((v) => v && v.toLowerCase().includes(q));
    }

    function draw() {
      const all = [...state.tasks.values()];
      const counts = {};
      for (const t of all) counts[t.status] = (counts[t.status] || 0) + 1;
      // Options are relabelled in place: replacing them would close the
      // list under the user's pointer at every event.
      select.options[0].textContent = 'all (' + all.length + ')';
      STATUSES.forEach((s, i) => { select.options[i + 1].textContent = s.replace('_', ' ') + ' (' + (counts[s] || 0) + ')'; });
      const list = all.filter(matches).sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
      count.textContent = list.length === all.length ? all.length + ' tasks' : list.length + ' of ' + all.length + ' tasks';
      fill(notes,
        notice(state.tasksError, true),
        state.tasksTruncated ? notice('More than ' + PAGE * MAX_PAGES + ' tasks: the newest ' + PAGE * MAX_PAGES + ' were read, and every task changed since is followed live.') : null);
      if (!list.length) {
        const text = !state.tasksLoaded ? 'Loading tasks…' : all.length ? 'No task matches the filter.' : 'No tasks yet. Submit one with POST /v1/tasks or tdf task submit.';
        rowCache.clear();
        fill(tbody, h('tr', null, h('td', { colspan: 9, class: 'empty' }, text)));
      } else {
        keyedRows(tbody, rowCache, list.slice(0, state.rows), (t) => t.id,
          (t) => [t.status, t.execution_step, t.attempts, t.node_id, t.completed_at, t.cleanup].join('|'), taskRow);
      }
      const rest = list.length - state.rows;
      more.hidden = rest <= 0;
      fill(more, h('button', { type: 'button', onclick: () => { state.rows += ROWS; draw(); } }, 'Show ' + Math.min(rest, ROWS) + ' more of ' + rest));
    }

    return {
      update(what) {
        if (what.has('tasks')) draw();
      },
      unmount() {},
    };
  }

  // ---- task view ----------------------------------------------------------

  // stepRows lays the task's steps out on one time axis: for each step its
  // state, its attempts and the time span it took. Waiting steps have no
  // attempts; their span runs from the end of the step before to the start
  // of the step after, or to now while the task waits there.
  function stepRows(t) {
    const states = stepStates(t);
    const current = now();
    const ended = TERMINAL.has(t.status) && t.completed_at ? ms(t.completed_at) : NaN;
    const rows = STEPS.map((s, i) => {
      const attempts = t.steps.filter((a) => a.step === s.id);
      const r = { s, i, state: states[i], attempts, from: NaN, to: NaN, open: false, approx: false };
      if (attempts.length) {
        r.from = Math.min(...attempts.map((a) => ms(a.started)));
        r.to = Math.max(...attempts.map((a) => (a.finished ? ms(a.finished) : current)));
        r.open = attempts.some((a) => !a.finished);
      }
      return r;
    });
    const reached = (r) => r.state !== 'pending' && r.state !== 'skipped';
    for (const r of rows) {
      if (r.s.kind !== 'waiting' || !reached(r)) continue;
      const seen = state.stepSeen.get(t.id + ' ' + r.s.id);
      const prev = rows[r.i - 1];
      if (prev && prev.s.kind !== 'waiting' && isFinite(prev.to) && !prev.open) r.from = prev.to;
      else if (seen) r.from = seen;
      else if (r.s.id === 'awaiting_followup' && isFinite(ended) && t.timeouts && t.timeouts.idle_seconds) {
        // Entered when the agent reported it had finished, which the task
        // record does not time; without an idle reset that was one idle
        // timeout before the task completed.
        const last = t.history[t.history.length - 1];
        if (last && last.reason === 'follow-up idle timeout') {
          r.from = ended - t.timeouts.idle_seconds * 1000;
          r.approx = true;
        }
      }
    }
    for (const r of rows) {
      if (r.s.kind !== 'waiting' || !reached(r)) continue;
      if (r.state === 'waiting') {
        r.to = current;
        r.open = true;
        continue;
      }
      const next = rows[r.i + 1];
      if (next && reached(next) && isFinite(next.from)) {
        r.to = next.from;
        r.approx = r.approx || next.approx;
      } else if (!next || !reached(next)) r.to = ended;
    }
    return rows;
  }

  function outcomeOf(a) {
    return a.finished ? a.outcome || 'done' : 'inflight';
  }

  function attemptItem(a) {
    const o = outcomeOf(a);
    const d = a.finished ? fmtDur(ms(a.finished) - ms(a.started)) : h('span', { 'data-rel': 'elapsed', 'data-t': ms(a.started) }, fmtDur(now() - ms(a.started)));
    const note = a.error ? h('span', { class: o === 'success' ? 'note' : 'err' }, a.error) : null;
    return h('li', { 'data-attempt': a.attempt, 'data-outcome': o },
      h('span', { class: 'mono' }, '#' + a.attempt),
      badge(o === 'inflight' ? 'in flight' : o, 'o-' + o),
      h('span', null, d),
      h('span', null, 'on ', h('strong', { class: 'mono', 'data-leader': a.leader || '' }, a.leader || '?')),
      h('span', { title: a.started + (a.finished ? ' → ' + a.finished : '') }, fmtClock(ms(a.started)), a.finished ? ' → ' + fmtClock(ms(a.finished)) : ' → …'),
      note);
  }

  function attemptList(r, openKeys) {
    const as = r.attempts;
    if (!as.length) {
      if (r.s.kind !== 'waiting' || r.state === 'pending' || r.state === 'skipped') return null;
      const text = r.state === 'waiting' ? 'waiting for the callback' : r.state === 'done' ? 'callback received' : r.state === 'failed' ? 'gave up waiting' : r.state === 'stopped' ? 'stopped while waiting' : 'no attempts';
      return h('ul', { class: 'attempts' }, h('li', null, text));
    }
    const counts = {};
    for (const a of as) counts[outcomeOf(a)] = (counts[outcomeOf(a)] || 0) + 1;
    const summary = Object.entries(counts).map(([o, n]) => n + ' ' + (o === 'inflight' ? 'in flight' : o)).join(', ');
    if (as.length <= 4) return h('ul', { class: 'attempts' }, as.map(attemptItem));
    const key = r.s.id;
    return h('ul', { class: 'attempts' },
      as.slice(-2).map(attemptItem),
      h('li', null, h('details', { 'data-key': key, open: openKeys.has(key) },
        h('summary', null, 'all ' + as.length + ' attempts (' + summary + ')'),
        h('ul', { class: 'attempts' }, as.map(attemptItem)))));
  }

  function diagram(t, openKeys) {
    const rows = stepRows(t);
    const t0 = ms(t.created_at);
    let t1 = TERMINAL.has(t.status) && t.completed_at ? ms(t.completed_at) : now();
    for (const r of rows) if (isFinite(r.to)) t1 = Math.max(t1, r.to);
    const span = Math.max(1, t1 - t0);
    const pct = (x) => (Math.min(Math.max(x - t0, 0), span) / span) * 100;
    const seg = (from, to, cls, title) => h('span', {
      class: 'seg ' + cls, title,
      style: { left: pct(from).toFixed(3) + '%', width: Math.max(0, pct(to) - pct(from)).toFixed(3) + '%' },
    });
    const STATE_TEXT = { done: 'done', current: 'running', waiting: 'waiting', failed: 'failed', stopped: 'stopped', pending: 'not reached', skipped: 'not reached' };
    const out = h('div', { class: 'diagram', role: 'list', 'aria-label': 'Execution steps' },
      h('div', { class: 'axis', 'aria-hidden': 'true' }, h('span', null, fmtClock(t0)), h('span', null, fmtDur(span))));
    for (const r of rows) {
      const segs = [];
      if (r.attempts.length) {
        for (const a of r.attempts) {
          const o = outcomeOf(a);
          const end = a.finished ? ms(a.finished) : now();
          segs.push(seg(ms(a.started), end, 'o-' + o, '#' + a.attempt + ' ' + o + ', ' + fmtDur(end - ms(a.started)) + ' on ' + (a.leader || '?')));
        }
      } else if (isFinite(r.from) && isFinite(r.to)) {
        segs.push(seg(r.from, r.to, 'wait' + (r.open ? ' open' : ''), (r.approx ? '≈ ' : '') + 'waited ' + fmtDur(r.to - r.from)));
      }
      const retries = r.attempts.filter((a) => a.outcome === 'retry').length;
      const d = isFinite(r.from) && isFinite(r.to) ? (r.approx ? '≈ ' : '') + fmtDur(r.to - r.from) : '—';
      const sub = r.attempts.length
        ? r.attempts.length + (r.attempts.length === 1 ? ' attempt' : ' attempts') + (retries ? ', ' + retries + (retries === 1 ? ' retry' : ' retries') : '')
        : r.s.kind === 'waiting' && isFinite(r.from) ? (r.open ? 'waiting' : 'waited') : '';
      add(out, h('div', { class: 'step', role: 'listitem', 'data-step': r.s.id, 'data-state': r.state, 'aria-label': (r.i + 1) + '. ' + r.s.label + ': ' + STATE_TEXT[r.state] },
        h('div', { class: 'name' },
          h('span', { class: 'num', 'aria-hidden': 'true' }, r.state === 'done' ? '✓' : r.state === 'failed' ? '✕' : String(r.i + 1)),
          h('span', null, h('span', { class: 'label' }, r.s.label), ' ', badge(STATE_TEXT[r.state], 'st-' + r.state),
            h('span', { class: 'kind' }, r.s.id + ' · ' + KIND_TEXT[r.s.kind]))),
        h('div', { class: 'lane' }, h('div', { class: 'track', 'aria-hidden': 'true' }, segs), attemptList(r, openKeys)),
        h('div', { class: 'dur' }, d, sub ? h('span', { class: 'sub' }, sub) : null)));
    }
    const cleanup = t.steps.filter((a) => a.step === 'cleanup');
    const legend = h('div', { class: 'legend', 'aria-hidden': 'true' },
      [['success', 'var(--ok)'], ['poll (not done yet)', 'var(--accent)'], ['retry', 'var(--warn)'], ['failed', 'var(--bad)'], ['in flight', 'var(--run)'], ['waiting for a callback', 'var(--wait)']]
        .map(([l, c]) => h('span', { style: { '--sw': c } }, l)));
    return [out, legend, cleanup.length || t.cleanup === 'pending'
      ? h('div', { class: 'cleanup', 'data-step': 'cleanup' }, h('h3', { class: 'small' }, 'Cleanup ', t.cleanup === 'pending' ? badge('pending', 'st-current') : badge('done', 'st-done')),
        cleanup.length ? h('ul', { class: 'attempts' }, cleanup.map(attemptItem)) : null)
      : null];
  }

  function actorBadge(a) {
    a = a || {};
    const text = a.type === 'workspace_callback' ? 'callback' : a.type || '?';
    return [badge(text, 'a-' + (a.type || 'none')), a.id ? h('span', { class: 'mono small' }, a.id) : null];
  }

  function historyList(t) {
    const t0 = ms(t.created_at);
    if (!t.history.length) return h('p', { class: 'muted' }, 'No status changes yet.');
    return h('ol', { class: 'history', id: 'history' }, t.history.map((e) => h('li', { 'data-to': e.to, 'data-actor': (e.actor && e.actor.type) || '' },
      h('span', { class: 'when', title: e.at }, fmtClock(ms(e.at)), h('br'), '+' + fmtDur(ms(e.at) - t0)),
      h('span', { class: 'what' }, e.from ? statusBadge(e.from) : badge('submitted'), '→', statusBadge(e.to), 'by', actorBadge(e.actor),
        e.reason ? h('span', { class: 'reason' }, e.reason) : null))));
  }

  function facts(t) {
    const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
    const o = t.output || {};
    const pr = safeURL(o.pr_url);
    const started = t.started_at ? ms(t.started_at) : NaN;
    const total = t.completed_at ? fmtDur(ms(t.completed_at) - ms(t.created_at)) : h('span', { 'data-rel': 'elapsed', 'data-t': ms(t.created_at) }, fmtDur(now() - ms(t.created_at)));
    return h('dl', { class: 'facts' },
      row('User / project', [t.user_id, ' / ', t.project_id]),
      row('Repository', [t.repository, t.branch ? [' @ ', h('code', null, t.branch)] : null]),
      row('VM', [dash(t.vm_size), ' · ', dash(t.vm_location)]),
      row('Node', t.node_id ? h('a', { href: '#/nodes?status=&q=' + encodeURIComponent(t.node_id), class: 'mono' }, t.node_id) : '—'),
      row('Workspace / session', [h('span', { class: 'mono' }, dash(t.workspace_id)), ' / ', h('span', { class: 'mono' }, dash(t.agent_session_id))]),
      row('Submitted', [fmtClock(ms(t.created_at)), ' (', timeEl(t.created_at), ')']),
      row('Agent started', isFinite(started) ? fmtClock(started) : '—'),
      row('Finished', t.completed_at ? fmtClock(ms(t.completed_at)) : '—'),
      row('Duration', total),
      row('Step attempts', String(t.attempts || 0)),
      t.step_deadline ? row('Step deadline', timeEl(t.step_deadline, 'due')) : null,
      t.error_message ? row('Error', h('span', { class: 'err' }, t.error_message)) : null,
      o.branch || pr || o.summary ? row('Output', [o.branch ? h('code', null, o.branch) : null, pr ? [' ', h('a', { href: pr, rel: 'noopener noreferrer', target: '_blank' }, 'pull request')] : null,
        o.summary ? h('div', { class: 'small' }, o.summary) : null]) : null,
      o.push ? row('Push', pushFacts(o.push)) : null,
      o.agent_error ? row('Agent error', h('span', { class: 'err' }, o.agent_error)) : null);
  }

  // pushFacts shows the agent's push result; a failed push is an error of
  // its own (the task goes on).
  function pushFacts(p) {
    const pr = safeURL(p.pr_url);
    return h('span', { id: 'push', 'data-pushed': p.pushed ? 'yes' : 'no' },
      badge(p.pushed ? 'pushed' : 'not pushed', p.pushed ? 'st-done' : 'st-failed'),
      p.commit_sha ? [' ', h('code', { title: p.commit_sha }, p.commit_sha.slice(0, 12))] : null,
      p.branch_name ? [' on ', h('code', null, p.branch_name)] : null,
      pr ? [' ', h('a', { href: pr, rel: 'noopener noreferrer', target: '_blank' }, 'PR' + (p.pr_number ? ' #' + p.pr_number : ''))] : null,
      p.has_uncommitted_changes ? h('span', { class: 'small muted' }, ' (had uncommitted changes)') : null,
      p.error ? h('div', { class: 'err small', id: 'push-error' }, p.error) : null);
  }

  // messageList shows a task's chat messages, oldest first.
  function messageList(tm) {
    const list = tm.messages || [];
    if (!list.length) return h('p', { class: 'muted' }, 'None reported for this task.');
    return [tm.dropped ? h('p', { class: 'small muted' }, tm.dropped + ' earlier messages are no longer kept.') : null,
      h('ol', { class: 'messages', id: 'messages' }, list.map((m) => h('li', { 'data-role': m.role, 'data-id': m.message_id },
        h('span', { class: 'when', title: m.timestamp }, badge(m.role, 'r-' + m.role), m.origin ? h('span', { class: 'small muted' }, ' ' + m.origin) : null,
          h('br'), h('span', { class: 'small muted' }, m.timestamp ? fmtClock(ms(m.timestamp)) : '')),
        h('div', { class: 'content' }, m.content,
          m.tool_metadata ? h('details', null, h('summary', { class: 'small muted' }, 'tool call'), h('pre', { class: 'small' }, m.tool_metadata)) : null))))];
  }

  function errorTable(list, opts) {
    opts = opts || {};
    // The compact form (inside a task) leaves out what the task shows.
    const full = !opts.compact;
    const cols = ['#', 'Time', 'Kind', full && 'Task', full && 'Node', 'Step', full && 'Class', full && 'Leader', 'Message'].filter(Boolean);
    return h('table', { id: opts.id },
      opts.caption ? h('caption', { class: 'sr-only' }, opts.caption) : null,
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c === '#' ? 'num' : null }, c)))),
      h('tbody', null, list.map((e) => h('tr', { 'data-seq': e.seq, 'data-kind': e.kind },
        h('td', { class: 'num' }, String(e.seq)),
        h('td', { class: 'nowrap', title: e.at }, fmtClock(ms(e.at)), h('br'), h('span', { class: 'small muted' }, timeEl(e.at))),
        h('td', null, badge(e.kind.replace('_', ' '), 'k-' + e.kind)),
        full && h('td', { class: 'nowrap' }, taskLink(e.task_id)),
        full && h('td', { class: 'mono nowrap' }, dash(e.node_id)),
        h('td', null, dash(e.step), e.attempt ? h('span', { class: 'small muted' }, ' #' + e.attempt) : null),
        full && h('td', null, dash(e.class)),
        full && h('td', { class: 'mono' }, dash(e.leader)),
        h('td', { class: 'err' }, e.message)))));
  }

  function taskView(main, r) {
    const id = r.id;
    let loadError = '';
    let errs = null;
    const head = h('div');
    const summary = h('section', { class: 'panel', 'aria-labelledby': 'summary-h' });
    const steps = h('section', { class: 'panel', id: 'task-detail', 'aria-labelledby': 'steps-h' });
    const hist = h('section', { class: 'panel', 'aria-labelledby': 'history-h' });
    const errors = h('section', { class: 'panel', 'aria-labelledby': 'errors-h' });
    const chat = h('section', { class: 'panel', id: 'messages-panel', 'aria-labelledby': 'messages-h' });
    const actions = h('div', { class: 'task-actions', id: 'task-actions' });
    const actionNote = h('div', { id: 'task-action-note' });
    add(main, h('a', { href: '#/tasks', class: 'crumb' }, '← All tasks'), head, actions, actionNote,
      steps, h('div', { class: 'grid2' }, h('div', null, hist, errors), summary), chat);

    let msgs = null;
    let msgsError = '';
    const loadMessages = throttle(async () => {
      try {
        msgs = await api('v1/tasks/' + encodeURIComponent(id) + '/messages');
        msgsError = '';
      } catch (e) {
        msgsError = 'Cannot read the messages: ' + e.message;
      }
      draw();
    }, 1000);

    let errsError = '';
    const loadErrors = throttle(async () => {
      try {
        errs = (await api('v1/errors?limit=' + PAGE + '&task_id=' + encodeURIComponent(id))).errors || [];
        errsError = '';
      } catch (e) {
        errsError = 'Cannot read the error records: ' + e.message;
      }
      draw();
    }, 1000);

    // Events carry what changed; the history and steps shown here come
    // from reading the task (again after each of its events, throttled).
    const loadTask = throttle(async () => {
      try {
        const t = normalize((await api('v1/tasks/' + encodeURIComponent(id))).task);
        // The event stream may have brought a newer change meanwhile.
        const cur = state.tasks.get(id);
        state.tasks.set(id, cur && ms(cur.updated_at) > ms(t.updated_at) ? applyChange(t, cur) : t);
        loadError = '';
      } catch (e) {
        loadError = 'Cannot read task ' + id + ': ' + e.message;
      }
      draw();
    }, 500);
    loadTask();
    loadErrors();
    loadMessages();

    function draw() {
      const t = state.tasks.get(id);
      if (!t) {
        fill(head, h('div', { class: 'title' }, h('h2', null, id)), notice(loadError, true) || h('p', { class: 'muted' }, 'Loading…'));
        return;
      }
      const openKeys = new Set([...steps.querySelectorAll('details[open]')].map((d) => d.getAttribute('data-key')));
      fill(head, h('div', { class: 'title' }, h('h2', null, t.id), statusBadge(t.status),
        t.execution_step ? badge(t.execution_step.replace(/_/g, ' '), 'st-current') : null,
        t.cleanup === 'pending' ? badge('cleanup pending', 'st-waiting') : null),
      notice(loadError, true));
      drawActions(t);
      fill(summary, h('h3', { id: 'summary-h' }, 'Task'), facts(t), h('p', { class: 'prompt', 'aria-label': 'Prompt' }, t.prompt));
      fill(steps, h('h3', { id: 'steps-h' }, 'Pipeline timeline'), diagram(t, openKeys));
      fill(hist, h('h3', { id: 'history-h' }, 'Status history'), historyList(t));
      fill(errors, h('h3', { id: 'errors-h' }, 'Error records'), notice(errsError, true),
        errs === null ? (errsError ? null : h('p', { class: 'muted' }, 'Loading…'))
          : errs.length ? h('div', { class: 'scroll' }, errorTable(errs, { compact: true, id: 'task-errors' }))
            : h('p', { class: 'muted' }, 'None for this task.'));
      fill(chat, h('h3', { id: 'messages-h' }, 'Agent messages', msgs && msgs.total ? h('span', { class: 'small muted' }, ' ' + msgs.total) : null),
        notice(msgsError, true),
        msgs === null ? (msgsError ? null : h('p', { class: 'muted' }, 'Loading…')) : messageList(msgs));
    }

    // The actions that fit the task's state; the API decides who may
    // (the task's owner or an admin) and answers why not.
    let prompt = '';
    function drawActions(t) {
      const awaiting = t.status === 'in_progress' && t.execution_step === 'awaiting_followup' && t.cleanup !== 'pending';
      const note = (text) => fill(actionNote, notice(text, true));
      const btn = (action, label, body) => h('button', { type: 'button', 'data-action': action,
        onclick: () => taskAction(t.id, action, body ? body() : {}, note).then(loadTask) }, label);
      const box = h('textarea', { id: 'followup-prompt', rows: 2, placeholder: 'A follow-up prompt for the agent' });
      box.value = prompt;
      box.addEventListener('input', () => { prompt = box.value; });
      // Redrawn on every event: keep the prompt being typed.
      if (actions.contains(document.activeElement) && document.activeElement.id === 'followup-prompt') return;
      fill(actions,
        !TERMINAL.has(t.status) ? btn('cancel', 'Cancel task') : null,
        t.status === 'failed' || t.status === 'cancelled' ? btn('rerun', 'Re-run') : null,
        awaiting ? btn('idle-reset', 'Reset idle timer') : null,
        awaiting ? h('div', { class: 'followup' }, box, btn('prompt', 'Send follow-up', () => {
          const body = { prompt: prompt };
          prompt = '';
          return body;
        })) : null);
    }

    const ticker = setInterval(() => {
      const t = state.tasks.get(id);
      if (t && !TERMINAL.has(t.status)) draw(); // in-flight bars grow
    }, 1000);

    return {
      update(what) {
        if (what.has('tasks:' + id)) {
          draw();
          loadTask();
          loadErrors();
          loadMessages();
        } else if (what.has('tasks')) draw();
      },
      unmount() {
        clearInterval(ticker);
      },
    };
  }

  // ---- cluster view -------------------------------------------------------

  function clusterView(main) {
    const body = h('div');
    add(main, h('div', { class: 'view-head' }, h('h2', null, 'Cluster'), h('span', { class: 'muted', id: 'cluster-age' })), body);
    const timer = setInterval(() => {
      const el = $('#cluster-age');
      if (el && state.clusterAt) el.textContent = 'as seen by ' + (state.cluster ? state.cluster.node_id : '?') + ', updated ' + fmtDur(Date.now() - state.clusterAt) + ' ago';
    }, 1000);

    function draw() {
      const c = state.cluster;
      if (!c) {
        fill(body, notice(state.clusterError ? 'Cannot read the cluster status: ' + state.clusterError : '', true) || h('p', { class: 'muted' }, 'Loading…'));
        return;
      }
      const health = clusterHealth();
      const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
      const lag = Math.max(0, c.commit_index - c.applied_index);
      fill(body,
        notice(state.clusterError ? 'The last refresh failed: ' + state.clusterError : '', true),
        h('div', { class: 'grid2' },
          h('section', { class: 'panel flush', 'aria-labelledby': 'members-h' },
            h('table', { id: 'members' },
              h('caption', { id: 'members-h' }, 'Members'),
              h('thead', null, h('tr', null, ['Member', 'Role', 'Voter', 'Health', 'Last contact', 'Lag', 'Raft address', 'API'].map((x) => h('th', { scope: 'col' }, x)))),
              h('tbody', null, (c.members || []).map((m) => {
                const url = safeURL(m.api_addr);
                return h('tr', { 'data-member': m.id, 'data-state': m.state },
                  h('td', { class: 'mono' }, m.id, m.id === c.node_id ? h('span', { class: 'small muted' }, ' (this node)') : null),
                  h('td', null, badge(m.state || '?', m.state === 'leader' ? 'm-leader' : '')),
                  h('td', null, m.voter ? 'voter' : 'non-voter'),
                  memberHealthCells(m),
                  h('td', { class: 'mono' }, dash(m.raft_addr)),
                  h('td', null, url ? h('a', { href: new URL('ui/', url.endsWith('/') ? url : url + '/').href, class: 'mono', title: 'this member\'s dashboard' }, m.api_addr) : h('span', { class: 'muted' }, 'unknown')));
              })))),
          h('section', { class: 'panel', 'aria-labelledby': 'raft-h' },
            h('h3', { id: 'raft-h' }, 'Raft state of ', h('span', { class: 'mono' }, c.node_id)),
            h('dl', { class: 'facts' },
              row('Health', [h('span', { class: 'badge ' + health.cls }, health.text), ' ', h('span', { class: 'small muted' }, health.why)]),
              row('Raft state', c.state),
              row('Leader', c.leader_id ? [h('span', { class: 'mono' }, c.leader_id), c.leader_api ? h('span', { class: 'small muted' }, ' ' + c.leader_api) : null] : 'none known'),
              row('Term', String(c.term)),
              row('Commit index', String(c.commit_index)),
              row('Applied index', [String(c.applied_index), h('span', { class: 'small muted' }, ' (' + lag + ' behind commit)')]),
              row('Last log index', String(c.last_index)),
              row('Ready (/readyz)', state.ready === null ? 'unknown' : state.ready ? 'yes' : 'no')))));
    }
    return {
      update(what) {
        if (what.has('cluster')) draw();
      },
      unmount() {
        clearInterval(timer);
      },
    };
  }

  // ---- nodes view ---------------------------------------------------------

  function meter(label, v) {
    if (typeof v !== 'number') return null;
    const cls = v >= 90 ? 'full' : v >= 75 ? 'high' : '';
    return h('span', { class: 'meter ' + cls, title: label + ' ' + v.toFixed(1) + '%' },
      h('span', { class: 'small muted' }, label), h('span', { class: 'bar', 'aria-hidden': 'true' }, h('i', { style: { width: Math.min(100, Math.max(0, v)).toFixed(1) + '%' } })), v.toFixed(0) + '%');
  }

  // What a node costs (GET /v1/nodes prices it from the cloud's price
  // list): per hour, and accrued since it was created.
  function costCell(n) {
    const c = n.cost;
    if (!c || typeof c.hourly !== 'number') return '—';
    return [h('span', { title: 'net, per hour' }, c.hourly.toFixed(4) + ' ' + c.currency + '/h'), h('br'),
      h('span', { class: 'small muted', title: 'accrued since the node was created' }, c.accrued.toFixed(4) + ' ' + c.currency)];
  }

  function alarmCell(n) {
    if (!n.alarm) return '—';
    const what = n.status === 'warm' ? 'warm timer' : n.status === 'destroying' ? 'delete retry' : n.status === 'active' ? (n.past_lifetime ? 'hard lifetime limit' : 'max lifetime') : n.alarm.kind;
    return [h('span', null, what), h('br'), h('span', { class: 'small' }, timeEl(n.alarm.due, 'due'))];
  }

  // Task actions (the owner or an admin): each asks for confirmation, then
  // POSTs /v1/tasks/{id}/{action}.
  const TASK_ACTIONS = {
    cancel: 'Cancel task %s? Its agent stops and its workspace is cleaned up.',
    rerun: 'Re-run task %s from the first step?',
    'idle-reset': 'Restart the idle timer of task %s? It waits for a follow-up that much longer.',
    prompt: 'Send this follow-up prompt to the agent of task %s?',
  };

  async function taskAction(id, action, body, note) {
    if (action === 'prompt' && !(body.prompt || '').trim()) {
      note('Write a follow-up prompt first.');
      return;
    }
    if (!window.confirm(TASK_ACTIONS[action].replace('%s', id))) return;
    try {
      const res = await fetch(apiURL('v1/tasks/' + encodeURIComponent(id) + '/' + action), {
        method: 'POST', body: JSON.stringify(body), cache: 'no-store',
        headers: authHeaders({ Accept: 'application/json', 'Content-Type': 'application/json' }),
      });
      noteWrite(res);
      if (!res.ok) {
        let msg = res.status + ' ' + res.statusText;
        try {
          const b = await res.json();
          if (b && b.error && b.error.message) msg = b.error.message;
        } catch {
          // not JSON: the status says it
        }
        throw new Error(msg);
      }
      note('');
    } catch (e) {
      note('Cannot ' + action.replace('-', ' ') + ' task ' + id + ': ' + e.message);
    }
  }

  // Operators' node actions (admin tokens): each asks for confirmation,
  // then POSTs /v1/nodes/{id}/{action} and reloads the nodes.
  const NODE_ACTIONS = {
    cordon: 'Cordon node %s? It takes no new task; its running tasks go on.',
    uncordon: 'Uncordon node %s? It takes tasks again.',
    drain: 'Drain node %s? It takes no new task and is destroyed once its last task has ended.',
    destroy: 'Destroy node %s now? Tasks still running on it fail.',
  };

  async function nodeAction(n, action, note) {
    if (!window.confirm(NODE_ACTIONS[action].replace('%s', n.id))) return;
    try {
      const res = await fetch(apiURL('v1/nodes/' + encodeURIComponent(n.id) + '/' + action),
        { method: 'POST', headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' });
      noteWrite(res);
      if (!res.ok) {
        let msg = res.status + ' ' + res.statusText;
        try {
          const body = await res.json();
          if (body && body.error && body.error.message) msg = body.error.message;
        } catch {
          // not JSON: the status says it
        }
        throw new Error(msg);
      }
      note('');
    } catch (e) {
      note('Cannot ' + action + ' node ' + n.id + ': ' + e.message);
    }
    loadNodes();
  }

  function nodeActionsCell(n, note) {
    if (n.status !== 'active' && n.status !== 'warm') return '—';
    const btn = (action, label) => h('button', { type: 'button', class: 'small', 'data-action': action, onclick: () => nodeAction(n, action, note) }, label);
    return [n.cordoned ? [h('span', { class: 'small muted', title: n.cordon_reason || '' }, 'cordoned'), h('br')] : null,
      n.cordoned ? (n.past_lifetime ? null : btn('uncordon', 'Uncordon')) : btn('cordon', 'Cordon'), ' ', btn('drain', 'Drain'), ' ', btn('destroy', 'Destroy')];
  }

  function nodesView(main, r) {
    let status = r.params.has('status') ? r.params.get('status') : 'live';
    if (!['live', ''].concat(NODE_STATUSES).includes(status)) status = 'live';
    let search = r.params.get('q') || '';
    const select = h('select', { id: 'node-status', name: 'status' },
      h('option', { value: 'live' }, 'not deleted'), h('option', { value: '' }, 'all'), NODE_STATUSES.map((s) => h('option', { value: s }, s)));
    select.value = status;
    const input = h('input', { type: 'search', id: 'node-search', name: 'q', placeholder: 'node, user, task, address', value: search });
    const count = h('span', { class: 'muted' });
    const notes = h('div');
    const tbody = h('tbody');
    const rowCache = new Map();
    let actionError = '';
    const params = () => {
      const p = new URLSearchParams();
      if (status !== 'live') p.set('status', status);
      if (search) p.set('q', search);
      return p;
    };
    select.addEventListener('change', () => { status = select.value; setParams('nodes', params()); draw(); });
    input.addEventListener('input', () => { search = input.value.trim(); setParams('nodes', params()); draw(); });
    add(main,
      h('div', { class: 'view-head' }, h('h2', null, 'Nodes'), count, h('span', { class: 'spacer' }),
        h('div', { class: 'filters', role: 'search' }, field('Lifecycle status', select), field('Search', input))),
      notes,
      h('div', { class: 'panel flush' }, h('table', { id: 'nodes-table' },
        h('caption', { class: 'sr-only' }, 'VM nodes'),
        h('thead', null, h('tr', null, ['Node', 'User', 'Status', 'Health', 'Ready', 'Workspaces', 'Load', 'Heartbeat', 'Cost', 'Alarm', 'Server', 'Task', 'Actions']
          .map((c) => h('th', { scope: 'col', class: c === 'Workspaces' ? 'num' : null }, c)))),
        tbody)));
    loadNodes();
    const timer = setInterval(loadNodes, NODES_EVERY);

    function draw() {
      const all = state.nodes || [];
      const q = search.toLowerCase();
      const list = all.filter((n) => (status === 'live' ? n.status !== 'deleted' : !status || n.status === status) &&
        (!q || [n.id, n.user_id, n.task_id, n.ipv4, n.server_name].some((v) => v && v.toLowerCase().includes(q))));
      list.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
      count.textContent = list.length + ' of ' + all.length + ' nodes';
      fill(notes, notice(state.nodesError || actionError, true));
      if (!list.length) {
        rowCache.clear();
        fill(tbody, h('tr', null, h('td', { colspan: 13, class: 'empty' }, state.nodes === null ? 'Loading nodes…' : 'No nodes match.')));
        return;
      }
      keyedRows(tbody, rowCache, list, (n) => n.id, (n) => JSON.stringify(n), (n) => {
        const m = n.metrics || {};
        return h('tr', { 'data-node-id': n.id, 'data-status': n.status },
          h('td', { class: 'mono nowrap' }, n.id, n.auto_provisioned ? null : h('span', { class: 'small muted' }, ' (manual)')),
          h('td', null, n.user_id),
          h('td', null, badge(n.status, 'n-' + n.status), n.last_error ? h('span', { class: 'small err ellipsis', title: n.last_error }, n.last_error) : null),
          h('td', null, badge(n.health || 'unknown', 'h-' + (n.health || 'unknown'))),
          h('td', { class: 'nowrap' }, n.ready ? 'yes' : 'no', n.ready_at ? [h('br'), h('span', { class: 'small muted' }, timeEl(n.ready_at))] : null),
          h('td', { class: 'num' }, String(n.active_workspaces || 0)),
          h('td', null, n.metrics ? h('div', { class: 'small' }, meter('cpu', m.cpu_load), ' ', meter('mem', m.memory_percent), ' ', meter('disk', m.disk_percent)) : '—'),
          h('td', { class: 'nowrap' }, n.last_heartbeat ? timeEl(n.last_heartbeat) : 'none yet'),
          h('td', { class: 'num nowrap' }, costCell(n)),
          h('td', { class: 'nowrap' }, alarmCell(n)),
          h('td', { class: 'nowrap', title: n.server_name ? 'server ' + n.server_name + (n.server_id ? ' (id ' + n.server_id + ')' : '') : null },
            [n.size, n.location].filter(Boolean).join(' · ') || '—', n.ipv4 ? [h('br'), h('span', { class: 'small muted mono' }, n.ipv4)] : null),
          h('td', { class: 'nowrap' }, taskLink(n.task_id)),
          h('td', { class: 'nowrap' }, nodeActionsCell(n, (msg) => { actionError = msg; fill(notes, notice(state.nodesError || actionError, true)); })));
      });
    }
    return {
      update(what) {
        if (what.has('nodes')) draw();
      },
      unmount() {
        clearInterval(timer);
      },
    };
  }

  // ---- errors view --------------------------------------------------------

  function errorsView(main, r) {
    const f = {
      kind: ERROR_KINDS.includes(r.params.get('kind')) ? r.params.get('kind') : '',
      task_id: r.params.get('task_id') || '',
      node_id: r.params.get('node_id') || '',
    };
    let list = [];
    let cursor = 0; // the largest sequence number read
    let error = '';
    let loaded = false;
    let shown = ROWS;
    let gen = 0; // filter generation: answers for old filters are dropped
    const kind = h('select', { id: 'error-kind', name: 'kind' }, h('option', { value: '' }, 'all kinds'), ERROR_KINDS.map((k) => h('option', { value: k }, k.replace('_', ' '))));
    kind.value = f.kind;
    const task = h('input', { type: 'text', id: 'error-task', name: 'task_id', placeholder: 'task id', value: f.task_id, size: 26, spellcheck: 'false' });
    const node = h('input', { type: 'text', id: 'error-node', name: 'node_id', placeholder: 'node id', value: f.node_id, size: 16, spellcheck: 'false' });
    const form = h('form', { class: 'filters', role: 'search' },
      field('Kind', kind), field('Task', task), field('Node', node),
      h('button', { type: 'submit' }, 'Apply'),
      h('button', { type: 'button', onclick: () => { kind.value = ''; task.value = ''; node.value = ''; apply(); } }, 'Clear'));
    form.addEventListener('submit', (ev) => { ev.preventDefault(); apply(); });
    kind.addEventListener('change', apply);
    const count = h('span', { class: 'muted' });
    const body = h('div');
    add(main, h('div', { class: 'view-head' }, h('h2', null, 'Errors'), count, h('span', { class: 'spacer' }), form), body);

    function apply() {
      f.kind = kind.value;
      f.task_id = task.value.trim();
      f.node_id = node.value.trim();
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(f)) if (v) p.set(k, v);
      setParams('errors', p);
      list = [];
      cursor = 0;
      loaded = false;
      shown = ROWS;
      gen++;
      draw();
      poll();
    }

    // poll reads the records after the last one seen: records never
    // change, they are only added (and the oldest dropped).
    let busy = false;
    let alive = true;
    async function poll() {
      if (busy || !alive) return;
      busy = true;
      const g = gen;
      try {
        for (let pages = 0; pages < MAX_PAGES; pages++) {
          const p = new URLSearchParams({ limit: String(PAGE) });
          for (const [k, v] of Object.entries(f)) if (v) p.set(k, v);
          if (cursor) p.set('cursor', String(cursor));
          const res = await api('v1/errors?' + p.toString());
          if (g !== gen) return;
          for (const e of res.errors || []) {
            list.push(e);
            cursor = Math.max(cursor, e.seq);
          }
          if (!res.next_cursor) break;
        }
        error = '';
      } catch (e) {
        if (g === gen) error = 'Cannot read the error records: ' + e.message;
      } finally {
        busy = false;
        if (g === gen) {
          loaded = true;
          draw();
        } else poll();
      }
    }

    function draw() {
      const rows = list.slice().reverse();
      count.textContent = loaded ? rows.length + (rows.length === 1 ? ' record' : ' records') + ', newest first' : '';
      fill(body,
        notice(error, true),
        h('div', { class: 'panel flush' },
          !loaded ? h('p', { class: 'empty' }, 'Loading…')
            : rows.length ? errorTable(rows.slice(0, shown), { id: 'errors-table', caption: 'Error records' })
              : h('p', { class: 'empty' }, 'No error records match.'),
          rows.length > shown ? h('div', { class: 'more' }, h('button', { type: 'button', onclick: () => { shown += ROWS; draw(); } }, 'Show more')) : null));
    }

    poll();
    const timer = setInterval(poll, ERRORS_EVERY);
    return {
      update() {},
      unmount() {
        clearInterval(timer);
        alive = false;
        gen++;
      },
    };
  }

  // ---- start --------------------------------------------------------------

  let started = false;
  window.addEventListener('hashchange', () => {
    if (!started) return; // the sign-in form stays until a token is given
    state.rows = ROWS;
    route();
    $('#view').focus({ preventScroll: true });
  });
  function start() {
    started = true;
    renderWho();
    renderStrip();
    route();
    connectEvents();
    loadCluster();
    setInterval(loadCluster, CLUSTER_EVERY);
    setInterval(tick, 1000);
    // If the stream never opens (for example, it is disabled), read the
    // list anyway.
    setTimeout(() => {
      if (!state.tasksLoaded && reloadOnOpen) {
        reloadOnOpen = false;
        loadTasks();
        loadNodes();
      }
    }, 4000);
  }

  // boot asks who we are: without a valid token (when the API wants one)
  // the page shows only the sign-in form.
  async function boot() {
    let res;
    try {
      res = await fetch(apiURL('v1/whoami'), { headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' });
    } catch (e) {
      setConn('down', 'cannot reach the node; retrying');
      setTimeout(boot, 2000);
      return;
    }
    if (res.status === 401) {
      const msg = sessionStorage.getItem(TOKEN_KEY + '.msg') || (token ? 'The API refused that token.' : '');
      sessionStorage.removeItem(TOKEN_KEY + '.msg');
      showLogin(msg);
      return;
    }
    try {
      const who = await res.json();
      auth.on = !!who.auth;
      auth.subject = who.subject || '';
      auth.scope = who.scope || 'admin';
    } catch {
      // an old node without /v1/whoami: no authentication
    }
    start();
  }
  boot();
})();
