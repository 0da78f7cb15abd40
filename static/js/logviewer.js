// The log viewer (templates/control/log_viewer.html): history from the JSON tail endpoint
// (/system/agents/<id>/logs), live lines from /ws/agents/<id>/logs/. Opened by a click on
// any element with data-log-agent="<id>" (delegated, so cards re-rendered by htmx keep
// working), by an element with data-log-autoopen="<id>" on load, or by
// window.panelLogViewer.open(id, name). Log lines are user data: always text nodes.
(function () {
  "use strict";

  var RECONNECT_MIN_MS = 1000;
  var RECONNECT_MAX_MS = 15000;
  var SEARCH_DELAY_MS = 300;
  var MIN_KEPT_LINES = 1000; // live lines are trimmed to max(selected N, this)
  var BOTTOM_SLACK_PX = 8;

  var modalEl = null;
  var els = {};
  var state = {
    agentId: null,
    name: "",
    opener: null,
    fetchSeq: 0,
    fetchAbort: null,
    socket: null,
    socketFilters: null,
    socketSeq: 0,
    reconnectTimer: null,
    reconnectDelay: RECONNECT_MIN_MS,
    searchTimer: null,
    // Live lines arriving while a history fetch is in flight (merged when it lands).
    pending: null,
    lastScrollTop: 0,
    available: true // false once the endpoint said the agent is unknown
  };

  function $(name) { return modalEl.querySelector('[data-lv="' + name + '"]'); }

  function init() {
    modalEl = document.getElementById("log-viewer");
    if (!modalEl) return false;
    if (els.lines) return true;
    els = {
      form: $("form"), name: $("name"), agentId: $("agent-id"), status: $("status"),
      message: $("message"), lines: $("lines"), download: $("download"),
      linesSelect: modalEl.querySelector("#lv-lines"), level: modalEl.querySelector("#lv-level"),
      q: modalEl.querySelector("#lv-q"), live: modalEl.querySelector("#lv-live"),
      autoscroll: modalEl.querySelector("#lv-autoscroll")
    };
    els.form.addEventListener("submit", function (e) {
      e.preventDefault();
      clearTimeout(state.searchTimer);
      reload();
    });
    els.linesSelect.addEventListener("change", loadHistory);
    els.level.addEventListener("change", reload);
    els.q.addEventListener("input", function () {
      // Not on every keystroke: a request (and a new socket when live) per pause in typing.
      clearTimeout(state.searchTimer);
      state.searchTimer = setTimeout(reload, SEARCH_DELAY_MS);
    });
    els.live.addEventListener("change", function () {
      if (els.live.checked) { connect(true); } else { disconnect(); setStatus("Live off."); }
    });
    els.autoscroll.addEventListener("change", function () {
      if (els.autoscroll.checked) scrollToBottom();
    });
    els.lines.addEventListener("scroll", onScroll, { passive: true });
    modalEl.addEventListener("hidden.bs.modal", onHidden);
    // Lines that landed while the modal was still hidden (display: none) could not be
    // scrolled to.
    modalEl.addEventListener("shown.bs.modal", function () {
      if (els.autoscroll.checked) scrollToBottom();
    });
    return true;
  }

  // --- opening and closing -----------------------------------------------------------

  function open(agentId, name, opener) {
    if (!agentId || !init()) return;
    disconnect();
    abortFetch();
    state.agentId = String(agentId);
    state.name = name || state.agentId;
    state.opener = opener || document.activeElement;
    state.available = true;
    els.live.disabled = false;
    els.name.textContent = state.name;
    els.agentId.textContent = state.name === state.agentId ? "" : state.agentId;
    els.lines.replaceChildren();
    setDownload(true);
    showMessage(null);
    els.autoscroll.checked = true;
    bootstrap.Modal.getOrCreateInstance(modalEl).show();
    reload();
  }

  function onHidden() {
    disconnect();
    abortFetch();
    clearTimeout(state.searchTimer);
    var opener = state.opener;
    state.agentId = null;
    state.opener = null;
    if (opener && document.contains(opener) && typeof opener.focus === "function") opener.focus();
  }

  function isOpen() { return state.agentId !== null; }

  // --- history (the JSON endpoint) -----------------------------------------------------

  function endpoint(extra) {
    var url = modalEl.getAttribute("data-logs-url").replace("__agent__", encodeURIComponent(state.agentId));
    return extra ? url + "?" + extra : url;
  }

  function filters() {
    var params = new URLSearchParams();
    if (els.level.value) params.set("level", els.level.value);
    var q = els.q.value.trim();
    if (q) params.set("q", q);
    return params;
  }

  function abortFetch() {
    if (state.fetchAbort) state.fetchAbort.abort();
    state.fetchAbort = null;
  }

  // Re-query with the current filters. With Live on, a socket is opened if there is
  // none, and one whose filters differ is reopened (and fetches the history once more when it opens, to cover lines written
  // meanwhile).
  function reload() {
    if (!isOpen()) return;
    if (els.live.checked && (!state.socket || filters().toString() !== state.socketFilters)) connect(true);
    loadHistory();
  }

  function loadHistory() {
    if (!isOpen()) return;
    abortFetch();
    var seq = ++state.fetchSeq;
    // Live lines arriving while the fetch is in flight are held, then merged: appended
    // now they would be wiped by the history, which may not contain them.
    if (liveOpen() && !state.pending) state.pending = [];
    var controller = new AbortController();
    state.fetchAbort = controller;
    var params = filters();
    params.set("lines", els.linesSelect.value);
    setStatus("Loading…");
    fetch(endpoint(params.toString()), {
      headers: { Accept: "application/json" }, credentials: "same-origin", signal: controller.signal
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { status: response.status, body: body };
      });
    }).then(function (result) {
      if (seq !== state.fetchSeq || !isOpen()) return;
      state.fetchAbort = null;
      if (result.status === 200) {
        showHistory(result.body.lines || [], !!result.body.truncated);
      } else {
        showFailure(result.status, result.body);
      }
    }).catch(function (err) {
      if (err && err.name === "AbortError") return;
      if (seq !== state.fetchSeq || !isOpen()) return;
      state.fetchAbort = null;
      flushPending([]);
      showMessage("danger", "Could not reach the server to read the log. Check that the panel is running, then press Refresh.");
      setStatus("");
    });
  }

  function showHistory(lines, truncated) {
    showMessage(null);
    setDownload(true);
    els.lines.replaceChildren();
    lines.forEach(function (line) { els.lines.appendChild(lineNode(line)); });
    flushPending(lines);
    if (!els.lines.childElementCount) showEmpty();
    var n = lines.length;
    var text = n === 1 ? "1 line" : n + " lines";
    if (truncated) text += " (older lines are in the download)";
    setStatus(text + (liveOpen() ? "; live." : "."));
    els.autoscroll.checked = true;
    scrollToBottom();
  }

  function showFailure(status, body) {
    els.lines.replaceChildren();
    var detail = body && body.detail;
    if (status === 404 && body && body.code === "no_log") {
      // The agent exists but has not logged yet: the live tail waits for the file (and
      // what it delivered meanwhile is shown).
      showMessage("info", detail);
      setDownload(false);
      showEmpty();
      setStatus(liveOpen() ? "Live: waiting for the first line." : "");
      flushPending(null);
      return;
    }
    state.pending = null;
    if (status === 404) {
      state.available = false;
      els.live.checked = false;
      els.live.disabled = true;
      setDownload(false);
      disconnect();
      showMessage("danger", detail || "There is no such agent.");
    } else if (status === 401) {
      disconnect();
      showMessage("danger", "Your session has ended. Log in again to read logs.");
    } else {
      showMessage("danger", detail || "Reading the log failed (HTTP " + status + ").");
    }
    setStatus("");
  }

  function showEmpty() {
    var empty = document.createElement("div");
    empty.className = "lv-empty";
    empty.setAttribute("data-lv-empty", "");
    empty.textContent = filters().toString() ? "No log lines match these filters." : "No log lines yet.";
    els.lines.appendChild(empty);
  }

  // --- live (the websocket) ------------------------------------------------------------

  function liveOpen() { return !!state.socket && state.socket.readyState === WebSocket.OPEN; }

  function socketUrl() {
    var path = modalEl.getAttribute("data-ws-path").replace("__agent__", encodeURIComponent(state.agentId));
    var params = filters().toString();
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path + (params ? "?" + params : "");
  }

  // (Re)open the socket; `fresh` resets the backoff (a user action, not a retry).
  function connect(fresh) {
    if (!isOpen() || !els.live.checked || !state.available) return;
    disconnect();
    if (fresh) state.reconnectDelay = RECONNECT_MIN_MS;
    var seq = ++state.socketSeq;
    var socket;
    try {
      socket = new WebSocket(socketUrl());
      state.socketFilters = filters().toString();
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    var gaveUp = false;
    setLive(fresh ? "connecting" : "reconnecting");
    setStatus(fresh ? "Live: connecting…" : "Live: reconnecting…");
    socket.addEventListener("open", function () {
      if (seq !== state.socketSeq) return;
      state.reconnectDelay = RECONNECT_MIN_MS;
      setLive("open");
      // Lines written while no socket listened are in the file: fetch the history again
      // and merge what the socket delivers meanwhile.
      state.pending = [];
      loadHistory();
    });
    socket.addEventListener("message", function (event) {
      if (seq !== state.socketSeq) return;
      var msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg.type === "line") {
        if (state.pending) { state.pending.push(msg.line); } else { appendLive([msg.line]); }
      } else if (msg.type === "skipped") {
        var gap = "… " + msg.count + (msg.count === 1 ? " line" : " lines") + " skipped (too many at once) …";
        if (state.pending) { state.pending.push({ gap: gap }); } else { appendLive([{ gap: gap }]); }
      } else if (msg.type === "error") {
        gaveUp = true;
        showMessage("danger", msg.detail || "The live tail stopped.");
      }
    });
    socket.addEventListener("close", function (event) {
      if (seq !== state.socketSeq) return;
      state.socket = null;
      if (gaveUp || event.code === 4401 || event.code === 4404 || event.code === 4400) {
        els.live.checked = false;
        setLive("off");
        if (event.code === 4401) showMessage("danger", "Your session has ended. Log in again to follow the log.");
        setStatus("Live off.");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (!isOpen() || !els.live.checked) return;
    var delay = state.reconnectDelay;
    setLive("reconnecting");
    state.reconnectDelay = Math.min(delay * 2, RECONNECT_MAX_MS);
    setStatus("Live connection lost; reconnecting in " + Math.round(delay / 1000) + " s…");
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(function () { connect(false); }, delay);
  }

  function disconnect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    state.socketSeq++;
    if (state.socket) {
      try { state.socket.close(1000); } catch (e) { /* already closing */ }
      state.socket = null;
    }
    state.pending = null;
    setLive("off");
  }

  // Append the lines that arrived during a history fetch, minus those the fetch already
  // returned (a line written just after the socket opened can be in both). `fetched`
  // null: the fetch failed, drop nothing.
  function flushPending(fetched) {
    var pending = state.pending;
    state.pending = null;
    if (!pending || !pending.length) return;
    var seen = new Set((fetched || []).slice(-(pending.length + 10)));
    appendLive(pending.filter(function (item) { return typeof item !== "string" || !seen.has(item); }));
  }

  function appendLive(items) {
    if (!items.length) return;
    var empty = els.lines.querySelector("[data-lv-empty]");
    if (empty) empty.remove();
    if (els.message.getAttribute("data-level") === "info") {
      showMessage(null); // "has not written a log yet": now it has
      setDownload(true);
    }
    var fragment = document.createDocumentFragment();
    items.forEach(function (item) { fragment.appendChild(lineNode(item)); });
    els.lines.appendChild(fragment);
    var keep = Math.max(parseInt(els.linesSelect.value, 10) || 0, MIN_KEPT_LINES);
    while (els.lines.childElementCount > keep) els.lines.firstElementChild.remove();
    if (els.autoscroll.checked) scrollToBottom();
  }

  // --- lines, scrolling, messages ------------------------------------------------------

  var LEVELS = { DEBUG: 1, INFO: 1, WARNING: 1, ERROR: 1, CRITICAL: 1 };

  function lineNode(item) {
    var node = document.createElement("div");
    if (typeof item !== "string") {
      node.className = "lv-line lv-gap";
      node.textContent = item.gap;
      return node;
    }
    // "<time> <LEVEL> <logger>: <message>": the level token is the second field.
    var level = item.split(" ", 2)[1];
    node.className = "lv-line" + (LEVELS[level] ? " lv-" + level : "");
    node.textContent = item; // text, never HTML: log lines are user data
    return node;
  }

  function atBottom() {
    var box = els.lines;
    return box.scrollHeight - box.scrollTop - box.clientHeight <= BOTTOM_SLACK_PX;
  }

  function scrollToBottom() {
    els.lines.scrollTop = els.lines.scrollHeight;
    state.lastScrollTop = els.lines.scrollTop;
  }

  // Scrolling up stops auto-scroll; reaching the bottom again resumes it.
  function onScroll() {
    var top = els.lines.scrollTop;
    if (atBottom()) {
      els.autoscroll.checked = true;
    } else if (top < state.lastScrollTop) {
      els.autoscroll.checked = false;
    }
    state.lastScrollTop = top;
  }

  function showMessage(level, text) {
    var box = els.message;
    if (!level) {
      box.hidden = true;
      box.textContent = "";
      box.removeAttribute("data-level");
      return;
    }
    box.className = "alert py-2 mb-0 alert-" + level;
    box.setAttribute("role", level === "danger" ? "alert" : "status");
    box.setAttribute("data-level", level);
    box.textContent = text;
    box.hidden = false;
  }

  function setStatus(text) { els.status.textContent = text; }

  // The socket's state on the modal (data-live="off|connecting|open|reconnecting"), for
  // styling and for tests.
  function setLive(value) { modalEl.setAttribute("data-live", value); }

  function setDownload(enabled) {
    var link = els.download;
    if (enabled && state.agentId) {
      link.href = endpoint("download=1");
      link.classList.remove("disabled");
      link.removeAttribute("aria-disabled");
      link.removeAttribute("tabindex");
    } else {
      link.removeAttribute("href");
      link.classList.add("disabled");
      link.setAttribute("aria-disabled", "true");
      link.setAttribute("tabindex", "-1");
    }
  }

  // --- entry points --------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var trigger = event.target.closest ? event.target.closest("[data-log-agent]") : null;
    if (!trigger) return;
    // A link keeps its own behaviour for a new tab or window.
    if (trigger.tagName === "A" && (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0)) return;
    if (!document.getElementById("log-viewer")) return;
    event.preventDefault();
    open(trigger.getAttribute("data-log-agent"), trigger.getAttribute("data-log-name"), trigger);
  });

  function autoOpen() {
    var el = document.querySelector("[data-log-autoopen]");
    if (el) open(el.getAttribute("data-log-autoopen"), el.getAttribute("data-log-name"), el);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", autoOpen);
  } else {
    autoOpen();
  }

  window.panelLogViewer = { open: open };
})();
