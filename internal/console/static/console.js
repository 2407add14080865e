// The console's only script: conveniences that the pages work without.
"use strict";
(function () {
  // DLQ: "select every entry shown", and the selection's count on the
  // replay button (disabled while nothing is selected).
  var all = document.getElementById("select-all");
  var button = document.getElementById("replay-selected");
  var picks = Array.prototype.slice.call(document.querySelectorAll("input.pick:not([disabled])"));
  function update() {
    if (!button) return;
    var n = picks.filter(function (p) { return p.checked; }).length;
    button.disabled = n === 0;
    button.textContent = n === 0 ? "Replay the selected entries…" : "Replay the " + n + " selected " + (n === 1 ? "entry" : "entries") + "…";
    if (all) {
      all.checked = n > 0 && n === picks.length;
      all.indeterminate = n > 0 && n < picks.length;
    }
  }
  if (all) {
    all.disabled = picks.length === 0;
    all.addEventListener("change", function () {
      picks.forEach(function (p) { p.checked = all.checked; });
      update();
    });
  }
  picks.forEach(function (p) { p.addEventListener("change", update); });
  update();

  // Overview: refresh every 15 s while the box is ticked (remembered).
  var auto = document.getElementById("autorefresh");
  if (auto) {
    var key = "console.autorefresh";
    var timer = null;
    function schedule() {
      if (timer) clearTimeout(timer);
      timer = auto.checked ? setTimeout(function () { location.reload(); }, 15000) : null;
    }
    try { auto.checked = localStorage.getItem(key) === "1"; } catch (e) { /* storage off */ }
    auto.addEventListener("change", function () {
      try { localStorage.setItem(key, auto.checked ? "1" : "0"); } catch (e) { /* storage off */ }
      schedule();
    });
    schedule();
  }
})();
