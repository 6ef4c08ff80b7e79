// Live progress for a running preflight (a progressive enhancement: without JavaScript the page
// refreshes itself until the run is done). Rows are built with textContent, never innerHTML.
"use strict";
(function () {
  var section = document.getElementById("run");
  if (!section || section.dataset.done === "true" || !window.EventSource) { return; }
  var runId = section.dataset.run;
  var body = document.querySelector("#results tbody");
  var count = document.getElementById("progress-count");
  var bar = document.getElementById("progress");
  var seen = body ? body.rows.length : 0;

  function cell(row, label, text, cls) {
    var td = row.insertCell(-1);
    td.setAttribute("data-label", label);
    if (cls) { td.className = cls; }
    if (text !== null) { td.textContent = text; }
    return td;
  }

  function addRow(r) {
    var tr = body.insertRow(-1);
    if (r.severity !== "ok") { tr.className = r.severity; }
    var code = document.createElement("code");
    code.textContent = r.url;
    cell(tr, "Destination", null, "wrap").appendChild(code);
    cell(tr, "Route", r.route);
    var rule = document.createElement("code");
    rule.textContent = r.rule;
    cell(tr, "Rule", null).appendChild(rule);
    var badge = document.createElement("span");
    badge.className = "badge " + r.severity;
    badge.textContent = r.status;
    cell(tr, "Status", null).appendChild(badge);
    cell(tr, "Detail", r.fix ? r.detail + " Fix: " + r.fix : r.detail);
    cell(tr, "Time", r.elapsed_ms + " ms", "num");
  }

  var source = new EventSource("/preflight/events/" + encodeURIComponent(runId));
  source.addEventListener("result", function (e) {
    var data = JSON.parse(e.data);
    if (data.n > seen) {  // rows already on the page came from the server
      addRow(data.row);
      seen = data.n;
    }
    if (count) { count.textContent = String(data.n); }
    if (bar) { bar.value = data.n; bar.textContent = data.n + " of " + data.total; }
  });
  source.addEventListener("done", function () {
    source.close();
    window.location.replace("/preflight?run=" + encodeURIComponent(runId));
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      window.location.replace("/preflight?run=" + encodeURIComponent(runId));
    }
  };
}());
