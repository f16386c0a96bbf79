// The site install page (templates/admin/tracking/site/install.html): copy buttons,
// and the live "last event received" check, which polls a small JSON view.
// A static file because the admin's Content-Security-Policy allows no inline script.
(function () {
  'use strict';

  var POLL_MS = 3000;

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-http admin (no Clipboard API): copy through a selected, hidden textarea.
    var area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'copy-scratch';
    document.body.appendChild(area);
    area.select();
    var copied = document.execCommand('copy');
    document.body.removeChild(area);
    return copied ? Promise.resolve() : Promise.reject(new Error('copy refused'));
  }

  function setUpCopyButtons() {
    document.querySelectorAll('.copy-button').forEach(function (button) {
      button.addEventListener('click', function () {
        var source = document.getElementById(button.dataset.copy);
        copyText(source.textContent).then(
          function () { flash(button, 'Copied'); },
          function () { flash(button, 'Select and copy by hand'); }
        );
      });
    });
  }

  function flash(button, label) {
    button.textContent = label;
    window.setTimeout(function () { button.textContent = 'Copy'; }, 2000);
  }

  function setUpCheck() {
    var box = document.getElementById('install-check');
    if (!box) return;
    var line = document.getElementById('last-event');
    function poll() {
      fetch(box.dataset.url, {credentials: 'same-origin', headers: {Accept: 'application/json'}})
        .then(function (response) {
          if (!response.ok) throw new Error('HTTP ' + response.status);
          return response.json();
        })
        .then(function (answer) {
          line.textContent = answer.message;
          box.classList.toggle('is-receiving', answer.received);
          box.classList.toggle('is-waiting', !answer.received);
        })
        .catch(function (error) {
          line.textContent = 'Could not check just now (' + error.message + '); retrying…';
        })
        .finally(function () { window.setTimeout(poll, POLL_MS); });
    }
    window.setTimeout(poll, POLL_MS);
  }

  document.addEventListener('DOMContentLoaded', function () {
    setUpCopyButtons();
    setUpCheck();
  });
})();
