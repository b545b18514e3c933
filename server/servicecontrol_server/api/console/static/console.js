// The console's one script: live lists over server-sent events, and the delete dialog.
// Every page works without it; it only spares reloads and opens the confirmation in place.
'use strict';

(function () {
  const FRAGMENT = { headers: { 'X-Requested-With': 'console' }, credentials: 'same-origin' };

  function say(text) {
    const status = document.getElementById('live-status');
    if (status) status.textContent = text;
  }

  // Refreshes `refresh()` at most once per 150 ms while events keep coming.
  function debounced(refresh) {
    let timer = null;
    return function () {
      if (timer) return;
      timer = setTimeout(function () { timer = null; refresh(); }, 150);
    };
  }

  function follow(url, onEvent) {
    // EventSource sends Last-Event-ID when it reconnects: the stream resumes there.
    const source = new EventSource(url);
    source.onmessage = function (message) {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      onEvent(event);
    };
    source.onerror = function () { say('Reconnecting…'); };
    source.onopen = function () { say('Live updates on'); };
    window.addEventListener('pagehide', function () { source.close(); });
    return source;
  }

  function liveServices() {
    const table = document.getElementById('services');
    if (!table) return;
    const body = document.getElementById('service-rows');
    const refresh = debounced(async function () {
      const answer = await fetch(table.dataset.live, FRAGMENT);
      if (answer.status === 401) { window.location.reload(); return; }
      if (!answer.ok) { say('Update failed; retrying on the next event'); return; }
      body.innerHTML = await answer.text();
      say('Updated ' + new Date().toLocaleTimeString());
    });
    follow('/events?cursor=' + encodeURIComponent(table.dataset.cursor), function (event) {
      if (event.type.indexOf('service.') === 0) refresh();
    });
  }

  function liveDashboard() {
    const region = document.getElementById('live-region');
    if (!region) return;
    const url = '/events?cursor=' + encodeURIComponent(region.dataset.cursor) +
      '&arn=' + encodeURIComponent(region.dataset.arn);
    const refresh = debounced(async function () {
      const answer = await fetch(window.location.href, FRAGMENT);
      if (!answer.ok) return;
      const page = new DOMParser().parseFromString(await answer.text(), 'text/html');
      const fresh = page.getElementById('live-region');
      const actions = page.querySelector('.actions');
      const current = document.querySelector('.actions');
      if (fresh) region.innerHTML = fresh.innerHTML;
      // The buttons change with the status; keep the one with focus if it still exists,
      // and leave them alone when they are the same (replacing them under a pointer
      // that is about to click would lose the click).
      if (current && !current.contains(document.activeElement)) {
        if (!actions) current.remove();
        else if (actions.innerHTML !== current.innerHTML) {
          current.innerHTML = actions.innerHTML;
          bindDialogs(current);
        }
      }
    });
    follow(url, refresh);
  }

  function trapTyping(dialog) {
    const input = dialog.querySelector('input[data-expect]');
    const confirm = dialog.querySelector('#confirm-delete');
    if (!input || !confirm) return;
    const check = function () {
      const typed = input.value.trim();
      confirm.disabled = !(typed === input.dataset.expect || typed === 'delete');
    };
    input.addEventListener('input', check);
    check();
  }

  async function openDialog(opener) {
    const dialog = document.getElementById(opener.dataset.dialog);
    if (!dialog || typeof dialog.showModal !== 'function') {
      window.location.href = opener.href;
      return;
    }
    const answer = await fetch(opener.href, FRAGMENT);
    if (answer.status === 401) { window.location.reload(); return; }
    dialog.innerHTML = await answer.text();
    if (!dialog.querySelector('[data-close]')) {
      const close = document.createElement('button');
      close.type = 'button';
      close.textContent = 'Close';
      close.setAttribute('data-close', '');
      dialog.appendChild(close);
    }
    dialog.querySelectorAll('[data-close]').forEach(function (button) {
      button.addEventListener('click', function () { dialog.close(); });
    });
    trapTyping(dialog);
    dialog.addEventListener('close', function () { opener.focus(); }, { once: true });
    dialog.showModal();
    const first = dialog.querySelector('input:not([type=hidden]), button');
    if (first) first.focus();
  }

  function bindDialogs(root) {
    root.querySelectorAll('[data-dialog]').forEach(function (opener) {
      opener.addEventListener('click', function (event) {
        event.preventDefault();
        openDialog(opener);
      });
      // A link styled as a button answers the space bar as a button does.
      opener.addEventListener('keydown', function (event) {
        if (event.key === ' ') { event.preventDefault(); openDialog(opener); }
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('.dialog-body').forEach(trapTyping);
    bindDialogs(document);
    liveServices();
    liveDashboard();
  });
})();
