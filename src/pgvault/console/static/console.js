// pgvault console: times in the browser's own time zone (the page says UTC; the title keeps it on hover).
(function () {
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      if (t.dataset.local) return;
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = d.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric",
                                                     hour: "2-digit", minute: "2-digit"});
      t.dataset.local = "1";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSettle", function (e) { localise(e.target); });
  // Forms that ask before they act: <form data-confirm="what happens">
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  }, true);
})();
