// The panel's small amount of behaviour: theme, toasts, relative times, the live socket's
// state. Everything else is server-rendered HTML swapped in by htmx.
(function () {
  "use strict";

  // --- theme: follows the system until the user picks one, then remembers it ---------
  function applyTheme(theme) {
    document.documentElement.setAttribute("data-bs-theme", theme);
    var label = document.getElementById("theme-label");
    if (label) label.textContent = theme === "dark" ? "Light" : "Dark";
    document.dispatchEvent(new CustomEvent("themechange", { detail: { theme: theme } }));
  }
  function currentTheme() {
    return document.documentElement.getAttribute("data-bs-theme") || "light";
  }
  document.addEventListener("DOMContentLoaded", function () {
    applyTheme(currentTheme());
    var toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var next = currentTheme() === "dark" ? "light" : "dark";
        try { localStorage.setItem("theme", next); } catch (e) {}
        applyTheme(next);
      });
    }
    var media = window.matchMedia("(prefers-color-scheme: dark)");
    media.addEventListener("change", function (e) {
      var saved = null;
      try { saved = localStorage.getItem("theme"); } catch (err) {}
      if (!saved) applyTheme(e.matches ? "dark" : "light");
    });
  });

  // --- polls only while the tab is visible: an element with data-poll-visible polls with
  // hx-trigger="every 2s, visibilitychange from:document", and its requests while the tab
  // is hidden are dropped here. (A trigger filter, "every 2s [cond]", would need eval,
  // which the Content-Security-Policy forbids.)
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail && e.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-poll-visible") && document.visibilityState !== "visible") {
      e.preventDefault();
    }
  });

  // --- toasts: the server sends HX-Trigger: {"toast": {"level", "message"}} ----------
  var ICONS = { success: "bi-check-circle", danger: "bi-x-octagon", warning: "bi-exclamation-triangle", info: "bi-info-circle" };
  function toast(level, message) {
    var box = document.getElementById("toasts");
    if (!box || !message) return;
    level = ICONS[level] ? level : "info";
    var el = document.createElement("div");
    el.className = "toast align-items-center border-0 text-bg-" + level;
    el.setAttribute("role", level === "danger" ? "alert" : "status");
    var body = document.createElement("div");
    body.className = "d-flex";
    var text = document.createElement("div");
    text.className = "toast-body";
    var icon = document.createElement("i");
    icon.className = "bi " + ICONS[level] + " me-2";
    icon.setAttribute("aria-hidden", "true");
    text.appendChild(icon);
    text.appendChild(document.createTextNode(message));  // text, never HTML: messages carry user data
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close btn-close-white me-2 m-auto";
    close.setAttribute("data-bs-dismiss", "toast");
    close.setAttribute("aria-label", "Close");
    body.appendChild(text);
    body.appendChild(close);
    el.appendChild(body);
    box.appendChild(el);
    var t = bootstrap.Toast.getOrCreateInstance(el, { delay: level === "danger" ? 8000 : 4000 });
    el.addEventListener("hidden.bs.toast", function () { el.remove(); });
    t.show();
  }
  window.panelToast = toast;
  document.addEventListener("toast", function (e) {
    var d = e.detail || {};
    toast(d.level, d.message);
  });
  // A failed request that carries no toast of its own still says something.
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    if (xhr && xhr.getResponseHeader("HX-Trigger")) return;
    toast("danger", "The request failed (" + (xhr ? xhr.status : "?") + "). Nothing was changed.");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("danger", "The server did not answer. Check that the panel is running.");
  });

  // --- relative times: <time data-ago datetime="ISO"> ticks every second ------------
  function ago(seconds) {
    if (seconds < 0) seconds = 0;
    if (seconds < 60) return Math.floor(seconds) + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time[data-ago]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("datetime"));
      if (isNaN(t)) return;
      var text = ago((now - t) / 1000);
      if (el.textContent !== text) el.textContent = text;  // untouched until it reads otherwise
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSettle", tick);
  document.addEventListener("htmx:oobAfterSwap", tick);
  document.addEventListener("DOMContentLoaded", tick);

  // --- the live socket: say when it is down, resync when it is back ------------------
  function indicator(state) {
    var el = document.getElementById("live-indicator");
    if (!el) return;
    el.hidden = false;
    if (state === "open") {
      el.className = "badge text-bg-success";
      el.innerHTML = '<i class="bi bi-broadcast" aria-hidden="true"></i> Live';
    } else {
      el.className = "badge text-bg-warning";
      el.innerHTML = '<i class="bi bi-wifi-off" aria-hidden="true"></i> Reconnecting…';
    }
  }
  // Reconnect soon after a drop (the extension's default waits up to a few seconds more).
  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      htmx.config.wsReconnectDelay = function (retry) {
        return Math.min(500 * Math.pow(2, retry), 10000) * (0.5 + Math.random() / 2);
      };
    }
  });
  // The ws extension retries only after abnormal closes (1006, 1011-1013). Any other close
  // (the server going away cleanly, a refused login) would leave the page stale: reload it
  // (to the login page if the session ended).
  var RETRIED = [1006, 1011, 1012, 1013];
  document.addEventListener("htmx:wsClose", function (e) {
    var code = e.detail && e.detail.event ? e.detail.event.code : 1006;
    if (RETRIED.indexOf(code) < 0) setTimeout(function () { location.reload(); }, code === 4401 ? 0 : 3000);
  });
  var wasClosed = false;
  document.addEventListener("htmx:wsOpen", function () {
    indicator("open");
    if (wasClosed) {
      // Pushes may have been missed while the socket was down: re-fetch what may be stale.
      document.body.dispatchEvent(new CustomEvent("resync"));
      wasClosed = false;
    }
  });
  document.addEventListener("htmx:wsClose", function () { wasClosed = true; indicator("closed"); });
  document.addEventListener("htmx:wsError", function () { wasClosed = true; indicator("closed"); });
})();
