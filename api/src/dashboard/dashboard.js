// Ouro dashboard: re-renders the formation from the server's event stream (no reload), and
// reveals a config var's value when its "show" button is pressed (a POST with the CSRF value).
(function () {
  'use strict';
  var events = document.getElementById('events');
  var body = document.getElementById('formation-body');
  var live = document.getElementById('live');
  function row(className, cells, header) {
    var tr = document.createElement('tr');
    tr.className = className;
    cells.forEach(function (text) {
      var cell = document.createElement(header ? 'th' : 'td');
      cell.textContent = text;
      if (header) cell.colSpan = 4;
      tr.appendChild(cell);
    });
    return tr;
  }
  function render(view) {
    var rows = [];
    view.processes.forEach(function (p) {
      rows.push(row('proc ' + (p.ok ? 'ok' : 'bad'), [p.summary], true));
      p.dynos.forEach(function (d) {
        var tr = row(d.ok ? 'ok' : 'bad', [d.name, d.state, d.release ? 'v' + d.release : '–', d.reason]);
        tr.dataset.dyno = d.name;
        rows.push(tr);
      });
    });
    body.replaceChildren.apply(body, rows);
  }
  if (events && body && window.EventSource) {
    var source = new EventSource(events.dataset.url);
    source.addEventListener('formation', function (e) {
      render(JSON.parse(e.data));
      live.textContent = 'live, updated ' + new Date().toLocaleTimeString();
    });
    source.onerror = function () { live.textContent = 'reconnecting…'; };
  }
  document.querySelectorAll('form.reveal').forEach(function (form) {
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var out = form.parentNode.querySelector('.value');
      fetch(form.action, { method: 'POST', body: new URLSearchParams(new FormData(form)), credentials: 'same-origin' })
        .then(function (r) {
          return r.text().then(function (text) { if (!r.ok) throw new Error(text); return text; });
        })
        .then(function (value) { out.textContent = value; form.hidden = true; })
        .catch(function (err) { out.textContent = 'could not show it: ' + err.message; });
    });
  });
})();
