/*! reengage.js | first-party visitor events for reengage | docs/snippet.md */
((w, d, nav, loc) => {
  'use strict';
  const V = '1.0.0';
  const old = w.reengage;
  if (old && old.version) return; // loaded twice on one page
  // GPC means "do not sell or share"; remarketing is that, so with GPC the
  // snippet sets no cookie and makes no request at all.
  const gpc = nav.globalPrivacyControl === true;
  const BATCH = 20;
  const MAX = 500; // events kept in the outbox; the oldest go first
  const KEEP = 6e4; // bytes: keepalive fetch and sendBeacon refuse more than 64 KiB
  const me = d.currentScript;
  const warn = (...a) => console.warn('reengage:', ...a);
  const uuid = () =>
    '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
    );
  const parse = (s) => {
    try {
      return JSON.parse(s);
    } catch (e) {}
  };
  let key, api, conf, dom, aid, uid, here, timer, busy, tagged;
  let ref = d.referrer; // of the current page view; in a single-page app, the previous view
  let cst = {}; // consent: {analytics, email, advertising}; absent = not decided
  let held = []; // calls not yet allowed to leave memory (no settings, no consent)
  let mem = []; // the outbox when localStorage is unavailable
  let wait = 0; // no request before this time (backoff, Retry-After)
  let tries = 0;
  let beaconed = {};

  // --- storage: a first-party cookie mirrored in localStorage ---------------
  const ls = (k, v) => {
    try {
      const s = localStorage;
      k = 'rg_' + k;
      if (v === undefined) return s.getItem(k);
      s.removeItem(k); // first: if the write fails (quota), a stale copy is worse than none
      if (v !== null) s.setItem(k, v);
    } catch (e) {}
  };
  const jar = (k) => {
    const m = d.cookie.match('(?:^|; )' + k + '=([^;]*)');
    return m ? decodeURIComponent(m[1]) : undefined;
  };
  const cookie = (k) => jar('rg_' + k);
  const crumb = (k, v, age, x) =>
    (d.cookie =
      `${k}=${encodeURIComponent(v)};Path=/;SameSite=Lax;Max-Age=${age}` +
      (x ? ';Domain=' + x : '') +
      (loc.protocol == 'https:' ? ';Secure' : ''));
  const bake = (k, v, age, x) => crumb('rg_' + k, v, age, x);
  // Candidate cookie domains, widest first ("example.com" before
  // "shop.example.com") so every subdomain shares one visitor; the browser
  // refuses public suffixes like "co.uk". '' = this host only.
  const domains = () => {
    const h = loc.hostname.split('.');
    const r = [];
    if (!/^[\d.]+$|:/.test(loc.hostname))
      for (let i = h.length - 2; i > 0; i--) r.push(h.slice(i).join('.'));
    return r.concat('');
  };
  const get = (k) => cookie(k) || ls(k);
  const set = (k, v) => {
    if (dom == null)
      dom =
        domains().find((x) => {
          const t = uuid();
          bake('t', t, 9, x);
          const ok = cookie('t') == t;
          bake('t', '', 0, x);
          return ok;
        }) || '';
    bake(k, v, conf.cookieDays * 864e2, dom);
    ls(k, v);
  };
  const del = (k) => {
    domains().forEach((x) => bake(k, '', 0, x));
    ls(k, null);
  };

  // --- outbox: events allowed to leave, kept until the server acknowledges --
  const load = () => parse(ls('q')) || mem;
  const save = (q) => {
    if (q.length > MAX) warn('outbox full, dropping', q.length - MAX, 'oldest events');
    mem = q.slice(-MAX);
    ls('q', JSON.stringify(mem));
  };
  const permits = (p) => conf && !gpc && (conf.consentMode == 'opt-in' ? cst[p] === true : cst[p] !== false);
  const allowed = () => permits('analytics');
  const wipe = () => {
    held = [];
    mem = [];
    aid = uid = 0;
    ['aid', 'uid', 'q', 'cst', 'ad'].forEach(del);
  };

  // --- the ad platforms' own ids (docs/audiences.md), only where advertising is allowed
  const CLICKS = ['gclid', 'gbraid', 'wbraid'];
  // Meta's _fbp/_fbc and Google's _ga cookies, and the click ids of the event's landing
  // URL, remembered (rg_ad) for the cookie's life so later events carry them too.
  const adIds = (search) => {
    const s = new URLSearchParams(search);
    const r = parse(get('ad')) || {};
    const f = s.get('fbclid');
    let c = jar('_fbc');
    if (f && /^[\w-]+$/.test(f) && !(c && c.split('.')[3] == f)) {
      // As Meta's pixel would: fb.<subdomainIndex>.<creation time ms>.<fbclid>, on the
      // widest domain (index: 'com' = 0, 'example.com' = 1), for 90 days.
      c = `fb.${dom ? dom.split('.').length - 1 : 1}.${Date.now()}.${f}`;
      crumb('_fbc', c, 7776e3, dom);
    }
    if (c) r.fbc = c;
    if (CLICKS.some((k) => s.get(k))) CLICKS.forEach((k) => (r[k] = s.get(k) || undefined));
    if (Object.keys(r).length) set('ad', JSON.stringify(r));
    // _ga is GA1.1.<random>.<timestamp>; the client id is its last two parts.
    const ga = /^GA\d\.\d+\.(\d+\.\d+)$/.exec(jar('_ga'));
    return Object.assign({ fbp: jar('_fbp'), gaClientId: ga ? ga[1] : undefined }, r);
  };
  // Moves calls from memory to the outbox once settings and consent allow it.
  const gate = () => {
    if (cst.analytics === false || gpc) {
      wipe();
      if (!gpc) ls('cst', JSON.stringify(cst)); // remember the refusal, without a cookie
      return;
    }
    if (!allowed()) return;
    aid = aid || get('aid') || uuid();
    set('aid', aid);
    // Sites whose audiences carry on-site tags name tags.js in their settings;
    // it fires them for members, once per session, never without advertising consent.
    if (conf.tags && !tagged && cst.advertising !== false) {
      tagged = d.createElement('script');
      tagged.async = 1;
      tagged.src = conf.tags;
      tagged.onload = () =>
        w.ReengageTags && w.ReengageTags.run({ api, writeKey: key, anonymousId: aid, advertising: cst.advertising });
      d.head.appendChild(tagged);
    }
    if (uid) set('uid', uid);
    if (Object.keys(cst).length) set('cst', JSON.stringify(cst));
    const ads = permits('advertising');
    if (!ads && get('ad')) del('ad');
    const q = load();
    held.splice(0).forEach((e) => {
      e.anonymousId = aid;
      e.context.consent = Object.assign({}, cst);
      if (ads) e.context.adIds = adIds(e.context.page.search);
      q.push(e);
    });
    save(q);
    schedule(q.length < BATCH ? 1e3 : 0);
  };

  // --- sending ---------------------------------------------------------------
  const schedule = (ms) => {
    if (!timer)
      timer = setTimeout(() => {
        timer = 0;
        flush();
      }, Math.max(ms, wait - Date.now()));
  };
  const backoff = (after) => {
    wait = Date.now() + Math.max(after * 1e3 || 0, Math.min(6e4, 1e3 * 2 ** tries++) * (0.5 + Math.random() / 2));
  };
  // The next batch: up to BATCH events and under KEEP bytes (one event at least).
  const next = (q) => {
    let b = q.slice(0, BATCH);
    let s;
    while (new Blob([(s = body(b))]).size > KEEP && b.length > 1) b = b.slice(0, b.length >> 1);
    return [b, s];
  };
  const body = (b) => JSON.stringify({ batch: b, writeKey: key, sentAt: new Date().toISOString() });
  const drop = (b) => {
    const ids = b.map((e) => e.messageId);
    save(load().filter((e) => ids.indexOf(e.messageId) < 0));
  };
  const flush = () => {
    const q = load();
    if (busy || !allowed() || !q.length) return;
    if (Date.now() < wait) return schedule(0);
    let [b, s] = next(q);
    busy = 1;
    // text/plain and no credentials: a "simple" CORS request, no preflight.
    fetch(api + '/v1/batch', { method: 'POST', body: s, keepalive: new Blob([s]).size < KEEP, credentials: 'omit' })
      .then(
        (r) => {
          const n = r.status;
          if (n >= 500 || n == 429 || n == 408) return backoff(r.headers.get('Retry-After'));
          tries = 0;
          if (n < 300) return drop(b);
          return r
            .json()
            .catch(() => ({}))
            .then((j) => {
              // One bad call refuses the whole batch, and the error names it
              // ("batch[3].traits.email"): drop that one, resend the others.
              const i = /^batch\[(\d+)\]/.exec(j.field);
              if (i && b[i[1]]) b = [b[i[1]]];
              warn('server refused', b.length, 'event(s), dropped:', n, j.error, j.field);
              drop(b);
            });
        },
        () => backoff(), // network error, blocked, or CORS refused: retry later
      )
      .then(() => {
        busy = 0;
        schedule(0);
      });
  };
  // The page is going away (or to the background): hand what is left to the
  // browser. Beaconed events stay in the outbox until a fetch is acknowledged;
  // the server keeps one copy per messageId, so a resend costs nothing.
  const hide = () => {
    if (!allowed()) return;
    for (let q = load().filter((e) => !beaconed[e.messageId]), b, s; q.length; q = q.slice(b.length)) {
      [b, s] = next(q);
      if (!nav.sendBeacon(api + '/v1/batch', s)) break;
      b.forEach((e) => (beaconed[e.messageId] = 1));
    }
  };
  w.addEventListener('pagehide', hide);
  d.addEventListener('visibilitychange', () => (d.visibilityState == 'hidden' ? hide() : schedule(0)));

  const settings = () =>
    fetch(`${api}/v1/settings/${encodeURIComponent(key)}`, { credentials: 'omit' })
      .then((r) => {
        if (r.ok)
          return r.json().then((s) => {
            conf = Object.assign({ cookieDays: 395 }, s);
            tries = 0;
            gate();
          });
        if (r.status < 500) return warn('settings refused:', r.status, '- is the write key right?');
        throw r;
      })
      .catch(() => {
        backoff();
        setTimeout(settings, wait - Date.now());
      });

  // --- the public API ----------------------------------------------------------
  const page = () => ({
    url: loc.href.split('#')[0],
    path: loc.pathname,
    referrer: ref,
    title: d.title,
    search: loc.search,
  });
  const make = (type, extra) => {
    const s = new URLSearchParams(loc.search);
    const campaign = {};
    'source medium campaign term content'.split(' ').forEach((k) => {
      const v = s.get('utm_' + k);
      if (v) campaign[k == 'campaign' ? 'name' : k] = v;
    });
    return Object.assign(
      {
        type,
        messageId: uuid(),
        userId: uid || undefined,
        timestamp: new Date().toISOString(),
        context: {
          page: page(),
          campaign,
          locale: nav.language,
          timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
          screen: { width: screen.width, height: screen.height },
          userAgent: nav.userAgent,
          library: { name: 'reengage.js', version: V },
        },
      },
      extra,
    );
  };
  const push = (e) => {
    if (gpc) return;
    if (held.length < MAX) held.push(e);
    gate();
  };
  const methods = {
    init(k, o) {
      if (key) return warn('init called twice; ignored');
      key = k;
      o = o || {};
      api = (o.api || (me && new URL(me.src).origin) || '').replace(/\/+$/, '');
      if (gpc) return wipe();
      cst = Object.assign(parse(get('cst')) || {}, cst); // consent() may come before init
      uid = get('uid');
      // Nothing leaves memory before the site's own settings say it may (the
      // browser caches them, so on later pages they answer at once).
      settings();
    },
    page(name, props) {
      if (typeof name == 'object') (props = name), (name = undefined);
      const url = loc.href.split('#')[0];
      if (here && here != url) ref = here;
      here = url;
      push(make('page', { name, properties: Object.assign(page(), props) }));
    },
    track(event, props) {
      // The server would refuse it; say so where the caller can see it.
      if (!event || typeof event != 'string') return warn('track needs an event name');
      push(make('track', { event, properties: props || {} }));
    },
    identify(id, traits) {
      if (typeof id == 'object') (traits = id), (id = undefined);
      traits = Object.assign({}, traits);
      if (id != null) uid = '' + id;
      const e = make('identify', { traits });
      // The HMAC proves the email; it is context, not a trait to store.
      e.context.user_hash = traits.user_hash;
      delete traits.user_hash;
      push(e);
    },
    consent(c) {
      Object.assign(cst, c);
      if (key) gate();
    },
    reset() {
      uid = 0;
      aid = uuid();
      del('uid');
      gate();
    },
  };
  const call = (m, ...a) => {
    try {
      methods[m] ? methods[m](...a) : warn('unknown call', m);
    } catch (e) {
      warn(m, 'failed:', e);
    }
  };
  call.version = V;
  w.reengage = call;
  ((old && old.q) || []).forEach((a) => call(...a));
})(window, document, navigator, location);
