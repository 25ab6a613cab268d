/* Chartkeeper: keyboard navigation and small form helpers. Our own code; no libraries. */
(function () {
  "use strict";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  // The browser's UTC offset (minutes east) for date-time fields, so times are stored with their zone.
  document.querySelectorAll("input[data-tz]").forEach(function (input) {
    input.value = String(-new Date().getTimezoneOffset());
  });

  var search = document.getElementById("q");

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var active = document.activeElement;
    // "/" focuses the patient search box (or opens the search page).
    if (ev.key === "/" && !typing(active)) {
      ev.preventDefault();
      if (search) { search.focus(); search.select(); }
      else { window.location.href = "/patients"; }
      return;
    }
    // Digits jump to the chart's sections.
    if (!typing(active) && /^[1-9]$/.test(ev.key)) {
      var link = document.querySelector('.sections a[data-key="' + ev.key + '"]');
      if (link) {
        ev.preventDefault();
        var target = document.querySelector(link.getAttribute("href"));
        if (target) { target.scrollIntoView({ block: "start" }); target.focus({ preventScroll: true }); }
      }
    }
  });

  // Queues with row checkboxes: "select all" ticks every enabled row of its form.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.addEventListener("change", function () {
      all.form.querySelectorAll('input[name="ids"]:not(:disabled)').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });

  // Result tables: arrow keys move between rows, Enter (or a click) opens the row.
  document.querySelectorAll("table[data-keynav]").forEach(function (table) {
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-href]"));
    if (!rows.length) return;
    function go(i) {
      if (i < 0 || i >= rows.length) return;
      rows[i].focus();
    }
    rows.forEach(function (row, i) {
      row.addEventListener("keydown", function (ev) {
        if (ev.key === "ArrowDown") { ev.preventDefault(); go(i + 1); }
        else if (ev.key === "ArrowUp") {
          ev.preventDefault();
          if (i === 0 && search) { search.focus(); } else { go(i - 1); }
        }
        else if (ev.key === "Home") { ev.preventDefault(); go(0); }
        else if (ev.key === "End") { ev.preventDefault(); go(rows.length - 1); }
        else if (ev.key === "Enter") { ev.preventDefault(); window.location.href = row.dataset.href; }
      });
      row.addEventListener("click", function (ev) {
        if (ev.target.closest("a")) return;
        window.location.href = row.dataset.href;
      });
    });
    if (search) {
      search.addEventListener("keydown", function (ev) {
        if (ev.key === "ArrowDown") { ev.preventDefault(); go(0); }
      });
    }
    // After a search, the first result takes the focus so Enter opens it at once.
    if (table.classList.contains("results") && search && document.activeElement === document.body) {
      go(0);
    }
  });
})();
