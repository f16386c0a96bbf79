/*! reengage tags.js | on-site retargeting tags for audience members | docs/audiences.md
 *
 * Fires each configured tag of the visitor's audiences at most once per browser
 * session (sessionStorage), never under Global Privacy Control, and never when
 * the visitor refused advertising. The server answers only for visitors whose
 * stored consent allows advertising on this site (opt-in sites: given).
 *
 *   ReengageTags.run({api, writeKey, anonymousId, advertising})
 *
 * Every option may be left out when reengage.js runs on the page: the write key
 * and API come from this script tag's data-write-key / src, the anonymous ID and
 * consent from reengage.js's rg_aid / rg_cst storage.
 */
(function (w, d, nav) {
  'use strict';
  if (w.ReengageTags) return;
  var me = d.currentScript;
  var KEY = 'rg_tag_';

  function stored(name) {
    var m = d.cookie.match('(?:^|; )rg_' + name + '=([^;]*)');
    if (m) return decodeURIComponent(m[1]);
    try { return w.localStorage.getItem('rg_' + name); } catch (e) { return null; }
  }
  function parse(text) { try { return JSON.parse(text); } catch (e) { return null; } }
  function once(id) {
    try {
      if (w.sessionStorage.getItem(KEY + id)) return false;
      w.sessionStorage.setItem(KEY + id, '1');
      return true;
    } catch (e) {
      return false; // no sessionStorage: "once per session" cannot be kept, so never
    }
  }
  function fire(tag) {
    if (!once(tag.audience)) return;
    if (tag.type === 'image') {
      new Image(1, 1).src = tag.url;
    } else if (tag.type === 'meta_pixel' && typeof w.fbq === 'function') {
      w.fbq('trackCustom', tag.event);
    } else if (tag.type === 'gtag' && typeof w.gtag === 'function') {
      w.gtag('event', tag.event);
    }
  }

  function run(options) {
    var o = options || {};
    if (nav.globalPrivacyControl === true) return Promise.resolve([]);
    var consent = parse(stored('cst')) || {};
    var advertising = 'advertising' in o ? o.advertising : consent.advertising;
    if (advertising === false) return Promise.resolve([]);
    var writeKey = o.writeKey || (me && me.getAttribute('data-write-key'));
    var api = (o.api || (me && new URL(me.src).origin) || '').replace(/\/+$/, '');
    var anonymousId = o.anonymousId || stored('aid');
    if (!writeKey || !anonymousId) return Promise.resolve([]);
    var url = api + '/v1/audiences/' + encodeURIComponent(writeKey) + '/' +
      encodeURIComponent(anonymousId);
    return fetch(url, { credentials: 'omit' })
      .then(function (r) { return r.ok ? r.json() : { tags: [] }; })
      .then(function (body) {
        var tags = (body && body.tags) || [];
        tags.forEach(fire);
        return tags;
      })
      .catch(function () { return []; });
  }

  w.ReengageTags = { run: run, version: '1.0.0' };
  if (me && me.hasAttribute('data-write-key') && me.hasAttribute('data-auto')) run();
})(window, document, navigator);
