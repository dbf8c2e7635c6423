// opsbook's page script: local times, the live log, confirmations, and one submit per form.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      if (t.dataset.local) return;
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.title = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
      t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
      t.dataset.local = "1";
    });
  }
  function follow(log) {
    var src = log.dataset.live;
    if (!src || !window.EventSource) return;
    var es = new EventSource(src);
    es.addEventListener("lines", function (e) {
      var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      log.insertAdjacentHTML("beforeend", e.data);
      // A bounded page: the oldest shown lines go once 5,000 are on it (the download has all).
      var lines = log.querySelectorAll(".l");
      for (var i = 0; i < lines.length - 5000; i++) lines[i].remove();
      if (atBottom) log.scrollTop = log.scrollHeight;
    });
    es.addEventListener("status", function () {
      es.close();
      window.location.reload();
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var log = document.getElementById("log");
    if (log) {
      log.scrollTop = log.scrollHeight;
      follow(log);
    }
    document.querySelectorAll("form[method=post]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (f.dataset.confirm && !window.confirm(f.dataset.confirm)) {
          e.preventDefault();
          return;
        }
        if (f.dataset.sent) {
          e.preventDefault();
          return;
        }
        f.dataset.sent = "1";
        // The button that was used still goes with the form (name=action).
        var used = e.submitter;
        setTimeout(function () {
          f.querySelectorAll("button").forEach(function (b) { if (b !== used) b.disabled = true; });
        }, 0);
      });
    });
  });
  document.addEventListener("htmx:afterSwap", function (e) { localTimes(e.target); });
})();
