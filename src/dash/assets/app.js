/* The ddts dashboard page: polls the JSON API (docs/cli.md) and draws the job
 * with DOM text nodes and hand-made SVG. Every string from the server is
 * placed with textContent or setAttribute, never parsed as HTML. */
'use strict';
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  let job = params.get('job');
  const SVGNS = 'http://www.w3.org/2000/svg';
  const COLORS = ['#2f6fdf', '#e8793a', '#1f9d55', '#9b51e0', '#d64545', '#0fa3b1', '#c98a00',
    '#5d6b89', '#e05a9c', '#6fa820'];
  const GLOBAL = '@global';
  const MAX_CURVES = 24;
  let curvesCut = 0;
  const colorOf = new Map();
  let clients = [];
  let histories = new Map();
  let fold = null;
  let lastJob = null;

  function url(path, extra) {
    const u = new URLSearchParams();
    if (job) u.set('job', job);
    if (extra) for (const k of Object.keys(extra)) u.set(k, extra[k]);
    if (token) u.set('token', token);
    const s = u.toString();
    return path + (s ? '?' + s : '');
  }
  async function get(path, extra) {
    const r = await fetch(url(path, extra), {cache: 'no-store'});
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r.json();
  }
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function fmt(v, digits) {
    return v === null || v === undefined || !isFinite(v) ? '–' : Number(v).toFixed(digits);
  }
  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return '–';
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    if (h > 0) return h + 'h ' + String(m).padStart(2, '0') + 'm';
    if (m > 0) return m + 'm ' + String(x).padStart(2, '0') + 's';
    return x + 's';
  }
  function clock(t) {
    const d = new Date(t * 1000);
    return d.toTimeString().slice(0, 8);
  }
  function bytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MiB';
    return (n / 1073741824).toFixed(2) + ' GiB';
  }
  function color(name) {
    if (name === GLOBAL) return '#141b2d';
    if (!colorOf.has(name)) colorOf.set(name, COLORS[colorOf.size % COLORS.length]);
    return colorOf.get(name);
  }
  function pill(text) { return el('span', 'pill ' + String(text).replace(/[^a-z]/g, ''), text); }

  /* ---- job, cards, settings, events, files, timeline ---- */
  function finalOf(summary, key) {
    const f = summary && summary.global && summary.global.final;
    if (!f) return null;
    if (Array.isArray(f)) { for (const m of f) if (m.name === key) return m.value; return null; }
    return key in f ? f[key] : null;
  }
  function renderJob(j) {
    lastJob = j;
    document.title = j.name + ' · ddts dashboard';
    $('job-name').textContent = j.name;
    $('job-status').replaceWith(Object.assign(pill(j.status), {id: 'job-status'}));
    $('card-rounds').textContent = j.rounds.count;
    const rec = j.rounds.recent;
    $('card-rounds-sub').textContent = rec.length ? 'last at ' + clock(rec[rec.length - 1].t) : '';
    const dur = j.summary && isFinite(j.summary.duration_s) ? j.summary.duration_s :
      (j.live && j.started ? j.now - j.started : null);
    $('card-elapsed').textContent = duration(dur);
    $('card-elapsed-sub').textContent = j.started ? 'since ' + clock(j.started) : '';
    const acc = finalOf(j.summary, 'test_accuracy'), loss = finalOf(j.summary, 'test_loss');
    // A k-fold report names the metric of its mean and std: kfold_mean_<metric>, kfold_std_<metric>.
    const f = j.summary && j.summary.global && j.summary.global.final;
    const names = !f ? [] : Array.isArray(f) ? f.map(m => m.name) : Object.keys(f);
    const meanKey = names.find(n => typeof n === 'string' && n.startsWith('kfold_mean_'));
    const metric = meanKey ? meanKey.slice('kfold_mean_'.length) : null;
    const km = metric ? finalOf(j.summary, meanKey) : null;
    const ks = metric ? finalOf(j.summary, 'kfold_std_' + metric) : null;
    if (km !== null) {
      $('card-global').textContent = fmt(km, 4) + ' ± ' + fmt(ks, 4);
      $('card-global-sub').textContent = 'k-fold mean of ' + metric + ' over the folds';
    } else {
      $('card-global').textContent = acc !== null ? fmt(acc, 4) : (loss !== null ? fmt(loss, 4) : '–');
      $('card-global-sub').textContent = acc !== null ? 'test accuracy · loss ' + fmt(loss, 4) :
        (loss !== null ? 'test loss' : (j.summary ? 'no test data to evaluate on' : 'after the job'));
    }
    const dl = $('settings');
    const items = [];
    if (j.settings) for (const k of Object.keys(j.settings)) {
      const v = j.settings[k];
      items.push(el('dt', null, k), el('dd', null, typeof v === 'object' ? JSON.stringify(v) : v));
    }
    if (!items.length) items.push(el('dd', 'empty', 'No settings recorded.'));
    dl.replaceChildren(...items);
    const rows = j.events.slice().reverse().map(function (e) {
      const tr = el('tr', e.level);
      tr.append(el('td', 't', clock(e.t)), el('td', 'lv', e.level), el('td', 'msg', e.msg));
      return tr;
    });
    if (!rows.length) {
      const tr = el('tr');
      tr.append(el('td', 'empty', j.live ? 'No events yet.' :
        'No failure, loss or reassignment recorded (events.log).'));
      rows.push(tr);
    }
    $('events-body').replaceChildren(...rows);
    const files = j.files.map(function (f) {
      const li = el('li');
      const a = el('a', null, f.path);
      a.setAttribute('href', url('/files/' + f.path));
      a.setAttribute('download', f.path.split('/').pop());
      li.append(a, el('span', 'size', bytes(f.bytes)));
      return li;
    });
    if (!files.length) files.push(el('li', 'empty', 'Results appear here once they exist.'));
    $('files').replaceChildren(...files);
    renderTimeline(j);
    liveGlobalCard();
  }
  function renderTimeline(j) {
    const rec = j.rounds.recent;
    const box = $('timeline');
    if (!rec.length) {
      box.replaceChildren(el('p', 'empty', j.rounds.count ? j.rounds.count +
        ' rounds (times are known for a running job only).' : 'No weight-averaging round yet.'));
      return;
    }
    const W = 640, H = 86, L = 8, R = 8;
    const t0 = rec[0].t, t1 = Math.max(j.now, rec[rec.length - 1].t, t0 + 1);
    const x = function (t) { return L + (W - L - R) * (t - t0) / (t1 - t0); };
    const s = svg('svg', {viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'rounds'});
    s.append(svg('line', {x1: L, x2: W - R, y1: 52, y2: 52, class: 'axis'}));
    const gaps = [];
    for (let i = 0; i < rec.length; i++) {
      const r = svg('rect', {x: x(rec[i].t) - 1, y: 14, width: 2, height: 38, class: 'r',
        'data-round': rec[i].round});
      const dt = i ? rec[i].t - rec[i - 1].t : null;
      if (dt !== null) gaps.push(dt);
      r.append(svg('title', {}, 'round ' + rec[i].round + ' at ' + clock(rec[i].t) +
        (dt !== null ? ' (' + dt.toFixed(2) + ' s after the previous)' : '')));
      s.append(r);
    }
    s.append(svg('text', {x: L, y: 70}, clock(t0)), svg('text', {x: W - R, y: 70,
      'text-anchor': 'end'}, clock(t1)));
    gaps.sort(function (a, b) { return a - b; });
    const med = gaps.length ? gaps[Math.floor(gaps.length / 2)] : null;
    box.replaceChildren(s, el('p', 'tlnote', rec.length + ' of ' + j.rounds.count +
      ' rounds shown' + (med !== null ? ' · median interval ' + med.toFixed(2) + ' s' : '')));
  }

  /* ---- clients ---- */
  function renderClients(list) {
    clients = list;
    let active = 0;
    const rows = list.map(function (c) {
      if (c.state === 'training' || c.state === 'syncing') active++;
      const tr = el('tr');
      tr.setAttribute('data-client', c.name);
      const name = el('td', 'name');
      const sw = el('span', 'swatch');
      sw.style.background = color(c.name);
      name.append(sw, document.createTextNode(c.name));
      const st = el('td'); st.append(pill(c.state));
      if (c.error) {
        /* The client's own words: text only, cut, whole in the tooltip. */
        const why = el('div', 'why', c.error.length > 90 ? c.error.slice(0, 90) + '…' : c.error);
        why.setAttribute('title', c.error);
        st.append(why);
      }
      const prog = el('td');
      const bar = el('span', 'bar'), fill = el('span');
      fill.style.width = (c.progress !== null ? Math.round(100 * c.progress) : 0) + '%';
      bar.append(fill);
      prog.append(bar, el('span', 'pct', c.progress !== null ? Math.round(100 * c.progress) + '%' : ''));
      tr.append(name, el('td', 'addr', c.address || '–'), st,
        el('td', 'num', c.share !== null && c.share >= 0 ? c.share : '–'),
        el('td', 'num', c.fold ? c.fold + '/' + c.folds : '–'),
        el('td', 'num', c.epoch ? c.epoch + '/' + c.epochs : '–'), prog,
        el('td', 'num', fmt(c.loss, 4)), el('td', 'num', fmt(c.accuracy, 4)),
        el('td', 'num', c.samples_per_s !== null ? Math.round(c.samples_per_s) : '–'),
        el('td', 'num', duration(c.eta_s)));
      return tr;
    });
    if (!rows.length) {
      const tr = el('tr'); const td = el('td', 'empty', 'Waiting for clients to join.');
      td.setAttribute('colspan', '11'); tr.append(td); rows.push(tr);
    }
    $('clients-body').replaceChildren(...rows);
    $('card-clients').textContent = list.length;
    $('card-clients-sub').textContent = active + ' training';
  }

  /* ---- curves ---- */
  function metricOrder(a, b) {
    const rank = function (k) {
      const base = k.replace(/^val_/, '');
      return (base === 'loss' ? 0 : 1) * 2 + (k.startsWith('val_') ? 1 : 0);
    };
    return rank(a) - rank(b) || a.localeCompare(b);
  }
  function renderCurves() {
    const folds = new Set();
    for (const h of histories.values()) for (const f of h.folds) folds.add(f.fold);
    const foldList = Array.from(folds).sort(function (a, b) { return a - b; });
    const pick = $('fold-pick');
    if (foldList.length > 1 || (foldList.length === 1 && foldList[0] > 0)) {
      $('fold-pick-label').hidden = false;
      const want = foldList.map(String).join(',');
      if (pick.getAttribute('data-folds') !== want) {
        pick.replaceChildren(...foldList.filter(function (f) { return f > 0; }).map(function (f) {
          const o = el('option', null, 'Fold ' + f); o.value = f; return o;
        }));
        pick.setAttribute('data-folds', want);
        if (fold === null || !folds.has(fold)) fold = foldList[foldList.length - 1];
        pick.value = fold;
      }
    } else {
      $('fold-pick-label').hidden = true;
      fold = null;
    }
    /* series[metric] = [{name, pts: [[epoch, value]]}] */
    const series = new Map();
    const legend = [];
    for (const [name, h] of histories) {
      for (const f of h.folds) {
        if (fold !== null && f.fold !== fold && !(name === GLOBAL && f.fold === 0)) continue;
        const ep = f.columns.epoch || [];
        for (const key of Object.keys(f.columns)) {
          if (key === 'epoch' || key === 'lr' || key === 'learning_rate') continue;
          const vals = f.columns[key];
          const pts = [];
          for (let i = 0; i < vals.length; i++)
            if (vals[i] !== null && isFinite(vals[i])) pts.push([ep[i], vals[i]]);
          if (!pts.length) continue;
          if (!series.has(key)) series.set(key, []);
          series.get(key).push({name: name, pts: pts});
        }
      }
    }
    for (const name of histories.keys()) {
      const item = el('span');
      const sw = el('span', 'swatch'); sw.style.background = color(name);
      item.append(sw, document.createTextNode(name === GLOBAL ? 'global model (test data)' : name));
      legend.push(item);
    }
    if (curvesCut > 0) legend.push(el('span', null, '(and ' + curvesCut + ' more clients, not drawn)'));
    $('legend').replaceChildren(...legend);
    liveGlobalCard();
    const keys = Array.from(series.keys()).sort(metricOrder);
    if (!keys.length) {
      $('charts').replaceChildren(el('p', 'empty', 'No finished epoch yet.'));
      return;
    }
    $('charts').replaceChildren(...keys.map(function (k) { return chart(k, series.get(k)); }));
  }
  /* Before the report, the Global model card shows the live curve's last point. */
  function liveGlobalCard() {
    const g = histories.get(GLOBAL);
    if (!lastJob || lastJob.summary || !g || g.source !== 'live' || !g.folds.length) return;
    const c = g.folds[0].columns, n = (c.epoch || []).length;
    if (!n) return;
    const acc = c.val_accuracy ? c.val_accuracy[n - 1] : null, loss = c.val_loss[n - 1];
    $('card-global').textContent = acc !== null && acc !== undefined ? fmt(acc, 4) : fmt(loss, 4);
    $('card-global-sub').textContent = (acc !== null && acc !== undefined ? 'test accuracy · loss ' +
      fmt(loss, 4) : 'test loss') + ' after epoch ' + c.epoch[n - 1] + ' (live)';
  }
  function chart(key, list) {
    const W = 420, H = 230, L = 46, R = 12, T = 10, B = 28;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of list) for (const p of s.pts) {
      x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]); y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
    }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
    const X = function (v) { return L + (W - L - R) * (v - x0) / (x1 - x0); };
    const Y = function (v) { return T + (H - T - B) * (1 - (v - y0) / (y1 - y0)); };
    const box = el('div', 'chart');
    box.setAttribute('data-metric', key);
    box.append(el('h3', null, key.startsWith('val_') ? key.slice(4) + ' (validation)' : key +
      (key.indexOf('loss') >= 0 || key.indexOf('acc') >= 0 ? ' (training)' : '')));
    const s = svg('svg', {viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': key});
    for (let i = 0; i <= 4; i++) {
      const v = y0 + (y1 - y0) * i / 4;
      s.append(svg('line', {x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: 'grid'}),
        svg('text', {x: L - 6, y: Y(v) + 3, 'text-anchor': 'end'}, Math.abs(v) >= 100 ?
          v.toFixed(0) : v.toPrecision(3)));
    }
    const step = Math.max(1, Math.ceil((x1 - x0) / 8));
    for (let e = Math.ceil(x0); e <= x1; e += step)
      s.append(svg('text', {x: X(e), y: H - B + 14, 'text-anchor': 'middle'}, e));
    s.append(svg('text', {x: (L + W - R) / 2, y: H - 2, 'text-anchor': 'middle'}, 'epoch'));
    s.append(svg('line', {x1: L, x2: L, y1: T, y2: H - B, class: 'axis'}),
      svg('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis'}));
    for (const ser of list) {
      const c = color(ser.name);
      const d = ser.pts.map(function (p, i) { return (i ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' +
        Y(p[1]).toFixed(1); }).join(' ');
      const path = svg('path', {d: d, class: 'line' + (ser.name === GLOBAL ? ' global' : ''),
        stroke: c});
      path.setAttribute('data-series', ser.name);
      s.append(path);
      for (const p of ser.pts) {
        const dot = svg('circle', {cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 3, fill: c,
          class: 'pt', 'data-series': ser.name, 'data-epoch': p[0]});
        dot.append(svg('title', {}, (ser.name === GLOBAL ? 'global' : ser.name) + ' · epoch ' +
          p[0] + ' · ' + key + ' ' + Number(p[1]).toFixed(4)));
        s.append(dot);
      }
    }
    box.append(s);
    return box;
  }

  /* ---- polling ---- */
  let failures = 0;
  function banner(text) {
    const b = $('banner');
    b.hidden = !text;
    b.textContent = text || '';
  }
  async function tick() {
    try {
      const [j, c] = await Promise.all([get('/api/job'), get('/api/clients')]);
      if (!job) job = j.name;
      renderJob(j);
      renderClients(c.clients);
      $('updated').textContent = 'updated ' + clock(Date.now() / 1000);
      failures = 0;
      banner('');
    } catch (e) {
      failures++;
      if (failures > 2) banner('The dashboard does not answer (' + e.message + '); retrying.');
    }
  }
  async function curves() {
    try {
      /* The curves of the first MAX_CURVES clients: a page of a 1000-client job
       * asks for 25 histories every 2 s, not 1000. */
      const names = Array.from(new Set(clients.map(function (c) { return c.name; })));
      curvesCut = Math.max(0, names.length - MAX_CURVES);
      const uniq = names.slice(0, MAX_CURVES).concat([GLOBAL]);
      const got = await Promise.all(uniq.map(function (n) { return get('/api/history', {client: n}); }));
      const next = new Map();
      for (const h of got) if (h.folds && h.folds.length) next.set(h.client, h);
      histories = next;
      renderCurves();
    } catch (e) { /* the next poll retries */ }
  }
  async function jobs() {
    try {
      const j = await get('/api/jobs');
      const pick = $('job-pick');
      if (j.jobs.length > 1) {
        $('job-pick-label').hidden = false;
        pick.replaceChildren(...j.jobs.map(function (x) {
          const o = el('option', null, x.name + (x.live ? ' (live)' : ' · ' + x.status));
          o.value = x.name; return o;
        }));
        if (job) pick.value = job;
      }
    } catch (e) { /* shown by tick */ }
  }
  function start() {
    $('job-pick').addEventListener('change', function (ev) {
      job = ev.target.value;
      const u = new URLSearchParams(location.search);
      u.set('job', job);
      history.replaceState(null, '', '?' + u.toString());
      histories = new Map();
      tick().then(curves);
    });
    $('fold-pick').addEventListener('change', function (ev) {
      fold = Number(ev.target.value);
      renderCurves();
    });
    jobs();
    tick().then(curves);
    setInterval(tick, 1000);
    setInterval(curves, 2000);
  }
  document.addEventListener('DOMContentLoaded', start);
})();
