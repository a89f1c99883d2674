// Refreshes the dashboard's live figures every 5 seconds. The page works
// without it: every figure is rendered by the broker, and this only
// replaces the text of elements whose id is a figure's name.
"use strict";
(function () {
  function refresh() {
    fetch("/live.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        var kind = r.headers.get("Content-Type") || "";
        if (!r.ok || kind.indexOf("application/json") !== 0) { throw new Error("not figures"); }
        return r.json();
      })
      .then(function (figures) {
        Object.keys(figures).forEach(function (id) {
          var el = document.getElementById(id);
          if (el && el.textContent !== figures[id]) { el.textContent = figures[id]; }
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, 5000);
})();
