// Resource Manager web view: keeps the server-rendered page live and sends
// what the user asks for. No framework: the server renders, this script
// listens to GET /api/resources/v1/events and patches the page in place.
(() => {
  'use strict';
  const API = '/api/resources/v1';
  // The tab's tokens (sessionStorage): the access token, the refresh token
  // when the issuer gave one, when to renew the access token (ms since the
  // epoch) and the issuer's token and revocation endpoints.
  const TOKEN = 'rm.token';
  const REFRESH = 'rm.refresh';
  const RENEW = 'rm.renew';
  const ISSUER = 'rm.issuer';
  const token = () => sessionStorage.getItem(TOKEN);
  const withAuth = (h = {}) => {
    const t = token();
    if (t) h.Authorization = 'Bearer ' + t;
    return h;
  };
  const issuer = () => JSON.parse(sessionStorage.getItem(ISSUER) || '{}');
  const form = { 'Content-Type': 'application/x-www-form-urlencoded' };

  // keep holds the issuer's answer t and sets the renewal a little before
  // the access token expires (expires_in, else its exp): a fifth of its life
  // before, at most a minute.
  function keep(t) {
    sessionStorage.setItem(TOKEN, t.access_token);
    if (t.refresh_token) sessionStorage.setItem(REFRESH, t.refresh_token);
    let life = Number(t.expires_in) * 1000;
    if (!(life > 0)) life = ((claims() || {}).exp || 0) * 1000 - Date.now();
    if (life > 0) sessionStorage.setItem(RENEW, String(Date.now() + life - Math.min(60000, life / 5)));
    else sessionStorage.removeItem(RENEW);
    issuerAway = false;
    retryIn = 0;
    planRenewal();
  }
  function drop() {
    for (const k of [TOKEN, REFRESH, RENEW, ISSUER]) sessionStorage.removeItem(k);
  }
  let renewTimer = 0;
  // issuerAway: the last renewal did not reach the issuer (no answer, or
  // a 5xx). The tokens stay, the renewal is tried again after retryIn (1 s
  // doubling to 30 s), and a 401 meanwhile does not sign the tab out.
  let issuerAway = false;
  let retryIn = 0;
  function retryRenewal() {
    issuerAway = true;
    retryIn = Math.min(30000, retryIn ? retryIn * 2 : 1000);
    clearTimeout(renewTimer);
    const held = token();
    renewTimer = setTimeout(() => renew(held), retryIn);
  }
  function planRenewal() {
    clearTimeout(renewTimer);
    const at = Number(sessionStorage.getItem(RENEW) || 0);
    if (!at || !sessionStorage.getItem(REFRESH)) return;
    const held = token();
    renewTimer = setTimeout(() => renew(held), Math.max(0, at - Date.now()));
  }

  // renew trades the refresh token for a new access token: true once the
  // tab holds another token than held. One renewal runs at a time; who asks
  // meanwhile waits for it. If the issuer refuses (the refresh token expired
  // or was revoked), both tokens are dropped and sign-in is offered; if it
  // cannot be reached, the renewal is tried again (retryRenewal).
  let renewing = null;
  function renew(held) {
    if (token() !== held) return Promise.resolve(true);
    if (!renewing) {
      const run = navigator.locks ? navigator.locks.request('rm.renew', renewShared) : renewNow();
      renewing = run.finally(() => { renewing = null; });
    }
    return renewing;
  }

  // A tab duplicated from another starts with its refresh token, which an
  // issuer that rotates them (zitadel, the dev IdP) accepts once: the
  // second tab to renew was refused and signed out. So the origin's tabs
  // renew one at a time (Web Locks), and a renewal leaves its answer in
  // localStorage, under a hash of the refresh token it traded, for two
  // minutes: a tab about to trade the same token takes that answer instead.
  const HANDOFF = 'rm.handoff.';
  const HANDOFF_MS = 120000;
  const canHandOff = () => !!(navigator.locks && window.crypto && crypto.subtle);
  const handoffKey = async (rt) =>
    HANDOFF + b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(rt))));
  // sweepHandoffs removes the answers older than two minutes (all of them
  // when all): at every renewal, when a page starts and at sign-out, so
  // that no token is left on disk for long.
  function sweepHandoffs(all) {
    try {
      for (const k of Object.keys(localStorage)) {
        if (!k.startsWith(HANDOFF)) continue;
        let at = 0;
        try { at = JSON.parse(localStorage.getItem(k) || '{}').at; } catch (e) { /* removed below */ }
        if (all || !(Date.now() - at < HANDOFF_MS)) localStorage.removeItem(k);
      }
    } catch (e) { /* no localStorage */ }
  }
  async function renewShared() {
    const rt = sessionStorage.getItem(REFRESH);
    if (rt && await adoptHandoff(rt, 0)) return true;
    return renewNow();
  }
  // adoptHandoff takes the newest answer left for the refresh token rt,
  // following the answers from one token to the next (a tab that slept
  // through several renewals of another takes the last), and reports
  // whether the tab now holds a token good for a while. localStorage
  // reaches other tabs a moment after it is written, so a refused renewal
  // looks again for up to wait ms before the tab is signed out.
  async function adoptHandoff(rt, wait) {
    if (!canHandOff()) return false;
    for (const until = Date.now() + wait; ;) {
      let left = null;
      try {
        sweepHandoffs(false);
        for (let cur = rt, i = 0; i < 100; i++) {
          const h = JSON.parse(localStorage.getItem(await handoffKey(cur)) || 'null');
          if (!h || !h.t || !h.t.access_token || !h.t.refresh_token) break;
          left = h;
          cur = h.t.refresh_token;
        }
      } catch (e) { return false; } // no localStorage: renew as before
      if (left && sessionStorage.getItem(REFRESH) === rt) {
        const t = { ...left.t };
        if (Number(t.expires_in) > 0) t.expires_in = Number(t.expires_in) - (Date.now() - left.at) / 1000;
        keep(t);
        // Still good for a while: taken. Else the caller renews with it.
        return Number(sessionStorage.getItem(RENEW) || 0) > Date.now();
      }
      if (Date.now() >= until) return false;
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  async function handOff(rt, t) {
    // Only an issuer that rotates refresh tokens needs it: one that does
    // not accepts the same token again.
    if (!canHandOff() || !t.refresh_token || t.refresh_token === rt) return;
    try {
      localStorage.setItem(await handoffKey(rt), JSON.stringify({ at: Date.now(), t }));
    } catch (e) { /* no localStorage: duplicated tabs are not helped */ }
  }

  async function renewNow() {
    const rt = sessionStorage.getItem(REFRESH);
    const ep = issuer().token;
    if (!rt || !ep) return false;
    let r;
    try {
      r = await fetch(ep, {
        method: 'POST', headers: form,
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt, client_id: document.body.dataset.oidcClient }),
      });
    } catch (e) {
      if (sessionStorage.getItem(REFRESH) === rt) retryRenewal(); // out of reach: the tokens stay
      return false;
    }
    const t = await r.json().catch(() => ({}));
    if (sessionStorage.getItem(REFRESH) !== rt) return false; // signed out meanwhile
    if (r.ok && t.access_token) {
      await handOff(rt, t);
      keep(t);
      return true;
    }
    if (r.status >= 400 && r.status < 500) {
      issuerAway = false;
      // Traded by a duplicate of this tab a moment ago: take its answer.
      if (await adoptHandoff(rt, 1000)) return true;
      if (sessionStorage.getItem(REFRESH) !== rt) return renewNow(); // took an answer too old to use: renew with it
      signedOut();
    } else {
      retryRenewal();
    }
    return false;
  }
  // signedOut drops the tab's tokens, the header's name and Sign out with
  // them, and offers to sign in: the issuer refused to renew.
  function signedOut() {
    drop();
    $('who').textContent = '';
    $('signout').hidden = true;
    showSignin(true);
  }

  // authFetch is fetch with the tab's token. A 401 renews the token once
  // (or takes the one another request renewed it to meanwhile) and sends
  // the request again; a 401 still offers to sign in, unless the issuer
  // could not be reached (the renewal is tried again).
  async function authFetch(url, init = {}) {
    const send = () => fetch(url, { ...init, headers: withAuth({ ...init.headers }) });
    const held = token();
    let r = await send();
    if (r.status === 401 && held && await renew(held)) r = await send();
    if (r.status === 401 && !issuerAway) showSignin(true);
    return r;
  }
  const $ = (id) => document.getElementById(id);

  function setLive(state, text) {
    const el = $('live');
    if (el && (el.dataset.state !== state || el.textContent !== text)) {
      el.dataset.state = state;
      el.textContent = text;
    }
  }

  // morph makes the live DOM under `from` look like `to`, touching only what
  // differs, so that scroll position, focus and open controls stay put.
  function sameNode(a, b) {
    if (a.nodeType !== b.nodeType || a.nodeName !== b.nodeName) return false;
    if (a.nodeType !== 1) return true;
    return a.getAttribute('data-key') === b.getAttribute('data-key') && a.id === b.id;
  }
  function morph(from, to) {
    if (from.nodeType === 3 || from.nodeType === 8) {
      if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
      return;
    }
    // Leave alone a form the user is typing in, and what the script said
    // about an action (the server renders those regions empty).
    if (from.tagName === 'FORM' && from.contains(document.activeElement) && document.activeElement !== document.body) return;
    if (from.classList.contains('form-msg') && from.id === to.id) return;
    for (const a of Array.from(from.attributes)) if (!to.hasAttribute(a.name)) from.removeAttribute(a.name);
    for (const a of Array.from(to.attributes)) if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
    const f = Array.from(from.childNodes);
    const t = Array.from(to.childNodes);
    for (let i = 0; i < t.length; i++) {
      const cur = f[i];
      if (!cur) from.appendChild(t[i]);
      else if (sameNode(cur, t[i])) morph(cur, t[i]);
      else from.replaceChild(t[i], cur);
    }
    for (let i = t.length; i < f.length; i++) f[i].remove();
  }

  // refresh fetches the page's main region again and patches it in. Bursts
  // of events are folded into one fetch; one fetch runs at a time.
  let inflight = false;
  let again = false;
  let timer = 0;
  function schedule(delay = 100) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  }
  async function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    const main = $('main');
    try {
      const r = await authFetch(main.dataset.self, { headers: { 'X-RM-Fragment': '1' }, cache: 'no-store' });
      const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      const next = doc.getElementById('main');
      if (next) {
        // How many refreshes the page has had (read by tests), counted
        // before the morph, which drops the attribute the server lacks.
        const n = Number(main.dataset.refreshed || 0) + 1;
        morph(main, next);
        resay();
        applyRoles();
        main.dataset.refreshed = String(n);
      }
    } catch (e) {
      setLive('off', 'update failed');
    } finally {
      inflight = false;
      if (again) { again = false; schedule(); }
    }
  }

  // The event types EventSource must listen for by name.
  const kinds = ['queue', 'plugin', 'application', 'app-runtime-config', 'deployment'];
  const TYPES = kinds.flatMap((k) => ['created', 'updated', 'deleted'].map((a) => `rm.${k}.${a}`)).concat(
    ['submitted', 'pending', 'admitted', 'running', 'succeeded', 'failed', 'cancel-requested', 'cancelled', 'cleaned', 'retrying', 'updated', 'deleted'].map((a) => 'rm.job.' + a),
    ['requested', 'ready', 'failed', 'deleted'].map((a) => 'rm.export.' + a));

  // stream follows GET /events. Without a token it is the browser's
  // EventSource, which reconnects by itself and resumes with Last-Event-ID.
  // EventSource cannot send Authorization, so with a token the same protocol
  // is read with fetch, sending Authorization and Last-Event-ID itself. The
  // API ends such a stream when its token expires (a message of event
  // token-expired alone): it is opened again at once with the token held
  // then (renewed meanwhile, or on its 401), else it asks to sign in; while
  // the issuer cannot be reached it is tried again, as a lost connection.
  function stream(query, onEvent, onOpen) {
    const url = API + '/events' + (query ? '?' + query : '');
    if (!token() && window.EventSource) {
      const es = new EventSource(url);
      es.onopen = () => { setLive('on', 'live'); onOpen(); };
      es.onerror = () => setLive('off', es.readyState === 2 ? 'not live' : 'reconnecting…');
      const handler = (m) => onEvent({ id: m.lastEventId, type: m.type, data: m.data });
      for (const t of TYPES) es.addEventListener(t, handler);
      es.onmessage = handler;
      window.addEventListener('pagehide', () => es.close());
      return;
    }
    fetchStream(url, onEvent, onOpen);
  }
  async function fetchStream(url, onEvent, onOpen) {
    let last = '';
    let delay = 500;
    for (;;) {
      const opened = Date.now();
      let expired = false;
      try {
        const h = { Accept: 'text/event-stream' };
        if (last) h['Last-Event-ID'] = last;
        const r = await authFetch(url, { headers: h, cache: 'no-store' });
        if (r.status === 401 && !issuerAway) { setLive('off', 'signed out'); return; }
        if (r.status === 401) throw new Error('events: 401 while the issuer is out of reach');
        // As EventSource, an answer the same request would get again ends
        // the stream: a job deleted before it first opened is a 422 (a
        // reconnect sends Last-Event-ID, which any job id passes).
        if (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429) { setLive('off', 'not live'); return; }
        if (!r.ok) throw new Error('events: ' + r.status);
        setLive('on', 'live');
        onOpen();
        delay = 500;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, '\n');
          let k;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const ev = { id: '', type: 'message', data: '' };
            for (const line of buf.slice(0, k).split('\n')) {
              const c = line.indexOf(':');
              if (c === 0) continue;
              const field = c < 0 ? line : line.slice(0, c);
              const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
              if (field === 'id') ev.id = val;
              else if (field === 'event') ev.type = val;
              else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
            }
            buf = buf.slice(k + 2);
            if (ev.id) last = ev.id;
            if (ev.data) onEvent(ev);
            else if (ev.type === 'token-expired') expired = true;
          }
        }
      } catch (e) { /* reconnect below */ }
      // Not a lost connection; one that expired at once is waited for as one.
      if (expired && Date.now() - opened >= 1000) continue;
      setLive('off', 'reconnecting…');
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  // feedQueues is the feed's queue names by id (the page's data-queues).
  let queueNames = null;
  function feedQueues() {
    if (!queueNames) {
      try { queueNames = JSON.parse(document.querySelector('#feed').dataset.queues || '{}'); } catch (e) { queueNames = {}; }
    }
    return queueNames;
  }

  // The feed page adds each event as a row; the other pages re-render.
  function feedRow(ev) {
    const body = document.querySelector('#feed tbody');
    if (!body || body.querySelector(`tr[data-key="${CSS.escape(ev.id)}"]`)) return;
    let ce = {};
    try { ce = JSON.parse(ev.data); } catch (e) { return; }
    const d = ce.data || {};
    const tr = document.createElement('tr');
    tr.dataset.key = ev.id;
    const cell = (text, cls) => {
      const td = document.createElement('td');
      if (cls) td.className = cls;
      if (text instanceof Node) td.appendChild(text); else td.textContent = text || '';
      tr.appendChild(td);
      return td;
    };
    cell(ev.id, 'num');
    cell((ce.time || '').replace('T', ' ').replace(/\.\d+/, '').replace('Z', 'Z'));
    const code = document.createElement('code');
    code.textContent = ev.type;
    cell(code);
    const kind = (ev.type.split('.')[1] || '');
    let res = document.createTextNode(d.name || ce.subject || '');
    if (kind === 'job' || kind === 'queue') {
      res = document.createElement('a');
      res.href = `/ui/${kind}s/${encodeURIComponent(ce.subject)}`;
      res.textContent = d.name || ce.subject;
    }
    cell(res);
    // Job events name their queue; a deployment's or an export's give its
    // id, named by the page's list (kept up by the queues' own events).
    const names = feedQueues();
    if (kind === 'queue' && d.name) names[ce.subject] = d.name;
    const qid = ce.queueid === '_' ? '' : (ce.queueid || '');
    cell(kind === 'queue' ? d.name : (d.queue_name || names[qid] || qid));
    const st = cell('');
    if (d.status) {
      const s = document.createElement('span');
      s.className = 'status s-' + d.status;
      s.textContent = d.status;
      st.appendChild(s);
    }
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
  }

  function follow() {
    const main = $('main');
    const live = main.dataset.live;
    if (live === '-' || main.hasAttribute('data-signin') && !token()) { setLive('off', 'not live'); return; }
    const feed = document.querySelector('#feed[data-feed]');
    let opened = false;
    stream(live, (ev) => (feed ? feedRow(ev) : schedule()), () => {
      // Whatever happened between rendering and (re)connecting is fetched once.
      if (opened || !feed) schedule(0);
      opened = true;
    });
  }

  // Confirmation in a <dialog>: keyboard and screen-reader friendly.
  function confirmAction(text) {
    const dlg = $('confirm');
    if (!dlg || !dlg.showModal) return Promise.resolve(window.confirm(text));
    $('confirm-text').textContent = text;
    dlg.returnValue = '';
    dlg.showModal();
    return new Promise((res) => dlg.addEventListener('close', () => res(dlg.returnValue === 'ok'), { once: true }));
  }

  async function problemText(r) {
    try {
      const p = await r.json();
      const fields = (p.errors || []).map((e) => `${e.field || e.location || ''}: ${e.message}`).join('; ');
      return (p.detail || p.title || r.statusText) + (fields ? ' (' + fields + ')' : '');
    } catch (e) {
      return r.status + ' ' + r.statusText;
    }
  }

  // said holds the last message of each message region (by id), so that a
  // refresh that rebuilds the region (a button came or went) shows it again.
  const said = new Map();
  function show(msg, text, good) {
    const cls = 'form-msg ' + (good ? 'good' : 'bad');
    if (msg.textContent !== text) msg.textContent = text;
    if (msg.className !== cls) msg.className = cls;
  }
  function say(container, text, good) {
    const msg = container && container.querySelector('.form-msg');
    if (!msg) return;
    show(msg, text, good);
    if (msg.id) said.set(msg.id, [text, good]);
  }
  function resay() {
    for (const [id, [text, good]] of said) {
      const msg = $(id);
      if (msg) show(msg, text, good);
    }
  }
  const unreachable = 'The server could not be reached; try again.';

  document.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-action]');
    if (b) {
      if (b.disabled || !(await confirmAction(b.dataset.confirm || 'Are you sure?'))) return;
      const box = b.closest('.actions') || b.closest('section');
      const init = { method: b.dataset.action, headers: {} };
      if (b.dataset.body) {
        init.body = b.dataset.body;
        init.headers['Content-Type'] = 'application/json';
      }
      // One request at a time: a second click while the first is on its
      // way would only repeat it (or be refused).
      b.disabled = true;
      const what = b.textContent.trim().toLowerCase();
      try {
        const r = await authFetch(b.dataset.path, init);
        say(box, r.ok ? 'Requested: ' + what + '.' : await problemText(r), r.ok);
      } catch (err) {
        say(box, unreachable);
      }
      // The refresh renders the button as the server now sees it.
      b.disabled = false;
      schedule(0);
      return;
    }
    const a = e.target.closest('a[data-auth-link]');
    if (a && token()) {
      // A plain link cannot carry the token: fetch it and hand over the bytes.
      e.preventDefault();
      let r;
      try {
        r = await authFetch(a.href);
      } catch (err) {
        window.alert(unreachable);
        return;
      }
      if (!r.ok) { window.alert(await problemText(r)); return; }
      const url = URL.createObjectURL(await r.blob());
      const tmp = document.createElement('a');
      tmp.href = url;
      if (a.hasAttribute('download')) tmp.download = a.getAttribute('download');
      else tmp.target = '_blank';
      tmp.click();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    }
  });

  document.addEventListener('submit', async (e) => {
    const f = e.target.closest('#limit-form');
    if (!f) return;
    e.preventDefault();
    const input = f.querySelector('input[name="limit"]');
    const v = input.value.trim();
    if (v !== '' && !/^\d+$/.test(v)) { say(f, 'The limit is a whole number from 0 to 100000, or empty for unlimited.'); input.focus(); return; }
    let r;
    try {
      r = await authFetch(`${API}/queues/${encodeURIComponent(f.dataset.queue)}`, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/merge-patch+json', 'If-Match': `"${f.dataset.version}"` },
        body: JSON.stringify({ maximum_allowed_worker_instances: v === '' ? null : Number(v) }),
      });
    } catch (err) {
      say(f, unreachable);
      return;
    }
    if (r.ok) {
      const q = await r.json();
      f.dataset.version = q.version;
      say(f, v === '' ? 'Saved: no limit.' : `Saved: at most ${v} workers.`, true);
    } else if (r.status === 412) {
      // Show the limit the queue has now in place of what was typed (the
      // refresh changes only the input's default value), then say why.
      document.activeElement.blur();
      await refresh();
      input.value = input.getAttribute('value') || '';
      say(f, 'The queue changed meanwhile: the form now shows its current limit. Save again to change it.');
      return;
    } else {
      say(f, await problemText(r));
    }
    document.activeElement.blur();
    schedule(0);
  });

  // Sign-in: authorization code with PKCE against the issuer named on the
  // page; the tokens are kept for this tab only (sessionStorage). The scope
  // asks for offline_access when the issuer lists it: most issuers (zitadel,
  // the dev IdP) give a refresh token only then.
  const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  async function signin() {
    const cfg = document.body.dataset;
    if (!cfg.oidcIssuer) {
      const t = window.prompt('Paste an access token (it is sent as Authorization: Bearer)');
      if (t) { drop(); sessionStorage.setItem(TOKEN, t.trim()); location.reload(); }
      return;
    }
    const disc = await (await fetch(cfg.oidcIssuer.replace(/\/$/, '') + '/.well-known/openid-configuration')).json();
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    sessionStorage.setItem('rm.pkce', JSON.stringify({
      verifier, state, tokenEndpoint: disc.token_endpoint, revocationEndpoint: disc.revocation_endpoint,
      back: location.pathname + location.search,
    }));
    const offline = (disc.scopes_supported || []).includes('offline_access') ? ' offline_access' : '';
    const u = new URL(disc.authorization_endpoint);
    u.search = new URLSearchParams({
      response_type: 'code', client_id: cfg.oidcClient, redirect_uri: location.origin + '/ui/callback',
      scope: cfg.oidcScope || 'openid profile' + offline, state, code_challenge: challenge, code_challenge_method: 'S256',
    }).toString();
    location.assign(u.toString());
  }
  async function callback() {
    const msg = $('callback-msg');
    const p = new URLSearchParams(location.search);
    const saved = JSON.parse(sessionStorage.getItem('rm.pkce') || '{}');
    if (p.get('error')) { msg.textContent = 'Sign-in failed: ' + (p.get('error_description') || p.get('error')); return; }
    if (!p.get('code') || !saved.state || p.get('state') !== saved.state) {
      msg.textContent = 'This sign-in answer does not belong to a sign-in started here; sign in again.';
      return;
    }
    const r = await fetch(saved.tokenEndpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: p.get('code'), redirect_uri: location.origin + '/ui/callback',
        client_id: document.body.dataset.oidcClient, code_verifier: saved.verifier,
      }),
    });
    const t = await r.json().catch(() => ({}));
    if (!r.ok || !t.access_token) { msg.textContent = 'The issuer refused the code: ' + (t.error_description || t.error || r.status); return; }
    drop();
    sessionStorage.setItem(ISSUER, JSON.stringify({ token: saved.tokenEndpoint, revocation: saved.revocationEndpoint }));
    keep(t);
    sessionStorage.removeItem('rm.pkce');
    location.replace(saved.back || '/ui/queues');
  }

  // claims of the held token, for showing who is signed in and hiding what
  // their roles do not allow (the API decides either way).
  function claims() {
    const t = token();
    if (!t) return null;
    try {
      return JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    } catch (e) {
      return {};
    }
  }
  function applyRoles() {
    const c = claims();
    if (!c) return;
    const roles = new Set([...((c.realm_access || {}).roles || []),
      ...Object.values(c.resource_access || {}).flatMap((r) => r.roles || []), ...(c.roles || [])]);
    const admin = roles.has('rm-admin');
    for (const el of document.querySelectorAll('[data-admin]')) el.hidden = !admin;
    const reader = roles.has('rm-admin') || roles.has('rm-user');
    for (const el of document.querySelectorAll('button[data-action]')) if (!reader) el.hidden = true;
  }
  // showSignin offers to sign in when no token is held, or (refused) when
  // the API refused the one held: it expired.
  function showSignin(refused) {
    const b = $('signin');
    if (b && (refused || !token())) b.hidden = false;
  }
  function authBar() {
    const c = claims();
    $('signin').addEventListener('click', signin);
    $('signout').addEventListener('click', signout);
    if (c) {
      $('who').textContent = c.preferred_username || c.email || c.sub || 'signed in';
      $('signout').hidden = false;
    } else if (document.body.dataset.oidcIssuer || $('main').hasAttribute('data-signin')) {
      showSignin();
    }
  }

  // signout forgets the tab's tokens and asks the issuer to revoke the
  // refresh token (RFC 7009) when it has a revocation endpoint.
  async function signout() {
    const rt = sessionStorage.getItem(REFRESH);
    const ep = issuer().revocation;
    drop();
    sweepHandoffs(true);
    if (rt && ep) {
      try {
        await fetch(ep, {
          method: 'POST', headers: form,
          body: new URLSearchParams({ token: rt, token_type_hint: 'refresh_token', client_id: document.body.dataset.oidcClient }),
        });
      } catch (e) { /* it expires by itself */ }
    }
    location.reload();
  }

  async function start() {
    sweepHandoffs(false);
    authBar();
    planRenewal();
    if (location.pathname === '/ui/callback') { callback(); return; }
    applyRoles();
    // Without a token the API refused the server's render: render with it.
    if ($('main').hasAttribute('data-signin') && token()) await refresh();
    follow();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
