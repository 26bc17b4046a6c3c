// jobfleet dashboard: optional enhancements. Every page works without this file.
//
// Live updates: every few seconds, while the tab is visible, fetch the same page again and
// swap in the fresh copy of each element marked `data-live` (matched by id). Nothing is
// built from strings here: the server rendered and escaped the HTML, and the copies come
// from a parsed document, in which scripts never run.
(function () {
  "use strict";

  var INTERVAL_MS = 5000;
  var STORAGE_KEY = "jobfleet.live";
  var timer = null;
  var busy = false;

  function regions() {
    return document.querySelectorAll("[data-live][id]");
  }

  function enabled() {
    try {
      return window.localStorage.getItem(STORAGE_KEY) !== "off";
    } catch (e) {
      return true;
    }
  }

  function setStatus(text) {
    var status = document.querySelector("[data-live-status]");
    if (status) status.textContent = text;
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = null;
    if (enabled() && !document.hidden && regions().length > 0) {
      timer = window.setTimeout(refresh, INTERVAL_MS);
    }
  }

  function refresh() {
    if (busy) return;
    busy = true;
    fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html", "X-Jobfleet-Live": "1" },
      redirect: "manual"
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + (response.status || "redirect"));
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var swapped = 0;
        regions().forEach(function (region) {
          // Leave a region alone while the keyboard is in it.
          if (region.contains(document.activeElement) && document.activeElement !== document.body) return;
          var next = fresh.getElementById(region.id);
          if (!next) return;
          region.replaceWith(document.importNode(next, true));
          swapped += 1;
        });
        setStatus(swapped > 0 ? "Updated " + new Date().toLocaleTimeString() : "Up to date");
        document.documentElement.setAttribute("data-live-updates", String(
          Number(document.documentElement.getAttribute("data-live-updates") || "0") + 1));
      })
      .catch(function (error) {
        setStatus("Not updated (" + error.message + "): reload the page");
      })
      .then(function () {
        busy = false;
        schedule();
      });
  }

  function setUpLive() {
    var controls = document.querySelector("[data-live-controls]");
    var toggle = document.querySelector("[data-live-toggle]");
    if (!controls || !toggle || regions().length === 0) return;
    controls.hidden = false;
    var render = function () {
      var on = enabled();
      toggle.setAttribute("aria-pressed", on ? "true" : "false");
      toggle.textContent = on ? "Live updates on" : "Live updates off";
    };
    toggle.addEventListener("click", function () {
      try {
        window.localStorage.setItem(STORAGE_KEY, enabled() ? "off" : "on");
      } catch (e) { /* private mode: the toggle lasts for this page only */ }
      render();
      setStatus(enabled() ? "Live updates resumed" : "Live updates paused");
      schedule();
    });
    document.addEventListener("visibilitychange", schedule);
    render();
    schedule();
  }

  // "Select all" for the dead-letter table of a bulk form.
  function setUpSelectAll() {
    document.querySelectorAll("form[data-bulk]").forEach(function (form) {
      var head = form.querySelector("thead th");
      var boxes = form.querySelectorAll("tbody input[type=checkbox][name=ids]");
      if (!head || boxes.length === 0) return;
      var all = document.createElement("input");
      all.type = "checkbox";
      all.setAttribute("aria-label", "Select all on this page");
      all.setAttribute("data-select-all", "");
      head.textContent = "";
      head.appendChild(all);
      all.addEventListener("change", function () {
        boxes.forEach(function (box) { box.checked = all.checked; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpLive();
    setUpSelectAll();
  });
})();
