// The main page: arrows between agent cards, ticking "last active" times, drag to reorder
// cards in a column, and the activity feed's scrolling. State comes from the server only.
(function () {
  "use strict";

  function readJSON(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  // --- arrows along the edges, animated when carrying messages ---------------------------
  function drawEdges() {
    var svg = document.getElementById("flow-edges");
    var flow = document.getElementById("flow");
    if (!svg || !flow) return;
    var edges = readJSON("edge-data") || [];
    var box = flow.getBoundingClientRect();
    var ns = "http://www.w3.org/2000/svg";
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var defs = document.createElementNS(ns, "defs");
    defs.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="currentColor"></path></marker>';
    svg.appendChild(defs);
    edges.forEach(function (e) {
      var a = document.getElementById("agent-" + e.from);
      var b = document.getElementById("agent-" + e.to);
      if (!a || !b) return;
      var ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
      var x1 = ra.right - box.left, y1 = ra.top + ra.height / 2 - box.top;
      var x2 = rb.left - box.left, y2 = rb.top + rb.height / 2 - box.top;
      if (x2 < x1) { x1 = ra.left - box.left; x2 = rb.right - box.left; }  // right to left
      var mid = (x1 + x2) / 2;
      var path = document.createElementNS(ns, "path");
      path.setAttribute("d", "M" + x1 + "," + y1 + " C" + mid + "," + y1 + " " + mid + "," + y2 + " " + x2 + "," + y2);
      path.setAttribute("marker-end", "url(#arrow)");
      path.setAttribute("class", e.live ? "live" : "");
      path.setAttribute("data-edge", e.from + "->" + e.to);
      svg.appendChild(path);
      if (e.live) {
        var label = document.createElementNS(ns, "text");
        label.setAttribute("x", mid);
        label.setAttribute("y", (y1 + y2) / 2 - 4);
        label.setAttribute("text-anchor", "middle");
        label.textContent = e.rate + "/s";
        svg.appendChild(label);
      }
    });
  }

  // --- "last active" of each card, refreshed every sweep without re-rendering it ----------
  function applyTimes() {
    var times = readJSON("live-times") || {};
    Object.keys(times).forEach(function (domId) {
      var el = document.querySelector("#" + CSS.escape(domId) + " time[data-ago]");
      if (el) el.setAttribute("datetime", times[domId]);
    });
  }

  // --- drag a card within its column; the order is saved --------------------------------
  var dragged = null;
  document.addEventListener("dragstart", function (e) {
    var card = e.target.closest && e.target.closest(".agent-card");
    if (!card || card.getAttribute("draggable") !== "true") return;
    dragged = card;
    card.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", card.dataset.agent);
  });
  document.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
  });
  document.addEventListener("dragover", function (e) {
    if (!dragged) return;
    var column = e.target.closest && e.target.closest(".flow-column");
    if (!column || column !== dragged.parentElement) return;  // roles decide the column
    e.preventDefault();
    var over = e.target.closest(".agent-card");
    if (over && over !== dragged) {
      var r = over.getBoundingClientRect();
      column.insertBefore(dragged, e.clientY < r.top + r.height / 2 ? over : over.nextSibling);
      drawEdges();
    }
  });
  function saveOrder(column) {
    var ids = Array.prototype.map.call(column.querySelectorAll(".agent-card"), function (c) { return c.dataset.agent; });
    htmx.ajax("POST", "/ui/agents/order", { values: { order: ids.join(",") }, swap: "none" });
  }
  document.addEventListener("drop", function (e) {
    if (!dragged) return;
    e.preventDefault();
    saveOrder(dragged.parentElement);
  });

  // --- the same without a mouse: each card's Move up / Move down buttons -----------------
  function announce(text) {
    var region = document.getElementById("move-status");
    if (region) region.textContent = text;
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-move]");
    if (!button) return;
    var card = button.closest(".agent-card");
    var column = card && card.parentElement;
    if (!column) return;
    var cards = Array.prototype.slice.call(column.querySelectorAll(".agent-card"));
    var at = cards.indexOf(card);
    var to = button.dataset.move === "up" ? at - 1 : at + 1;
    var name = card.getAttribute("aria-label") || "The card";
    if (to < 0 || to >= cards.length) {
      announce(name + " is already " + (to < 0 ? "first" : "last") + " in its column.");
      return;
    }
    column.insertBefore(card, button.dataset.move === "up" ? cards[to] : cards[to].nextSibling);
    // Moving a node drops its focus: give it back, so the key can be pressed again.
    button.focus();
    announce(name + " moved to place " + (to + 1) + " of " + cards.length + ".");
    drawEdges();
    saveOrder(column);
  });

  // --- the activity feed: newest at the bottom, follows unless the user scrolled up ------
  var follow = true;
  function feedBox() { return document.getElementById("feed"); }
  function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 24; }
  function feedFilter() {
    return {
      level: (document.getElementById("feed-level") || {}).value || "",
      source: (document.getElementById("feed-source") || {}).value || "",
    };
  }
  function feedItems() { return document.querySelectorAll("#feed-items .feed-item"); }
  // The server sends this page only the entries its filter shows (it is told below); an
  // entry pushed while a new choice was on its way is hidden here.
  var RANK = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };
  var MIN_RANK = { "": 0, warning: 30, error: 40 };
  function shown(item) {
    var chosen = feedFilter();
    return (RANK[item.dataset.level] || 0) >= (MIN_RANK[chosen.level] || 0) &&
      (!chosen.source || item.dataset.source === chosen.source);
  }
  function applyFeedFilters() {
    feedItems().forEach(function (item) { item.hidden = !shown(item); });
  }
  // An entry can arrive twice (pushed while the page or a filtered list was being read),
  // and a push can bring entries older than some shown (written while the page loaded):
  // one copy of each, oldest first, so "Load older" starts from the true oldest.
  function orderFeed() {
    var box = document.getElementById("feed-items");
    if (!box) return;
    var seen = {};
    var items = [];
    feedItems().forEach(function (item) {
      if (seen[item.dataset.id]) { item.remove(); return; }
      seen[item.dataset.id] = true;
      items.push(item);
    });
    var id = function (item) { return parseInt(item.dataset.id, 10) || 0; };
    for (var i = 1; i < items.length; i++) {
      if (id(items[i - 1]) > id(items[i])) {
        items.sort(function (a, b) { return id(a) - id(b); });
        items.forEach(function (item) { box.appendChild(item); });
        return;
      }
    }
  }
  // Tell the server what the feed shows: on every (re)connection and every change.
  var liveSocket = null;
  function sendFeedFilter() {
    if (liveSocket) liveSocket.send(JSON.stringify({ feed_filter: feedFilter() }));
  }
  document.addEventListener("htmx:wsOpen", function (e) {
    liveSocket = e.detail && e.detail.socketWrapper;
    sendFeedFilter();
  });
  var FEED_KEEP = 500;  // entries kept in the page; older ones come back with "Load older"
  function scrollFeed() {
    var box = feedBox();
    if (!box) return;
    if (follow) {
      var items = document.querySelectorAll("#feed-items .feed-item");
      for (var i = 0; i < items.length - FEED_KEEP; i++) items[i].remove();
      box.scrollTop = box.scrollHeight;
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var box = feedBox();
    if (box) {
      box.addEventListener("scroll", function () { follow = atBottom(box); });
      scrollFeed();
    }
    var older = document.getElementById("feed-older");
    var filters = document.getElementById("feed-filters");
    if (older) {
      older.addEventListener("click", function () {
        // Entries older than the oldest shown, under the filter chosen now.
        var oldest = null;
        feedItems().forEach(function (item) {
          var id = parseInt(item.dataset.id, 10);
          if (!isNaN(id) && (oldest === null || id < oldest)) oldest = id;
        });
        var params = new URLSearchParams(feedFilter());
        if (oldest !== null) params.set("before", String(oldest));
        fetch("/ui/feed?" + params.toString(), { credentials: "same-origin" })
          .then(function (r) {
            if (!r.ok) throw new Error("HTTP " + r.status);
            return r.text();
          })
          .then(function (html) {
            var items = document.getElementById("feed-items");
            var box = feedBox();
            var before = feedItems().length;
            var height = box.scrollHeight;
            items.insertAdjacentHTML("afterbegin", html);  // server-rendered, escaped partials
            orderFeed();
            applyFeedFilters();
            box.scrollTop += box.scrollHeight - height;  // keep the reader's place
            if (feedItems().length === before) { older.disabled = true; older.textContent = "No older activity"; }
          })
          .catch(function () {
            if (window.panelToast) window.panelToast("danger", "Older activity could not be loaded. Try again.");
          });
      });
    }
    if (filters) {
      // A new choice: the server is told, the list is re-read (hx-get), and there may be
      // older entries again.
      filters.addEventListener("change", function () {
        sendFeedFilter();
        if (older) { older.disabled = false; older.textContent = "Load older"; }
      });
    }
    drawEdges();
    applyTimes();
  });

  // The filtered list replaces the feed; entries pushed while it was read come back after it.
  var pushedMeanwhile = [];
  document.addEventListener("htmx:beforeSwap", function (e) {
    var target = e.detail && e.detail.target;
    if (target && target.id === "feed-items") pushedMeanwhile = Array.prototype.slice.call(feedItems());
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    var target = e.detail && e.detail.target;
    if (!target || target.id !== "feed-items") return;
    var newest = 0;
    feedItems().forEach(function (item) { newest = Math.max(newest, parseInt(item.dataset.id, 10) || 0); });
    pushedMeanwhile.forEach(function (item) {
      if ((parseInt(item.dataset.id, 10) || 0) > newest && shown(item)) target.appendChild(item);
    });
    pushedMeanwhile = [];
    applyFeedFilters();
  });

  document.addEventListener("htmx:oobAfterSwap", function (e) {
    var id = e.detail && e.detail.target && e.detail.target.id;
    if (id === "feed-items") { orderFeed(); applyFeedFilters(); scrollFeed(); }
    if (id === "live-times") applyTimes();
    if (id === "edge-data" || id === "flow" || (id && id.indexOf("agent-") === 0)) drawEdges();
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    var id = e.detail && e.detail.target && e.detail.target.id;
    if (id === "feed-items") { scrollFeed(); }
    drawEdges();
  });
  window.addEventListener("resize", drawEdges);

  // While the live socket is open, an action's answer is not swapped in: the hub pushes
  // the object's new state as the action announces it (and every later one). An answer
  // swapped in after a newer push would undo it, and the hub would not push it again.
  var live = false;
  document.addEventListener("htmx:wsOpen", function () { live = true; });
  document.addEventListener("htmx:wsClose", function () { live = false; });
  document.addEventListener("htmx:wsError", function () { live = false; });
  document.addEventListener("htmx:beforeSwap", function (e) {
    var elt = e.detail.requestConfig && e.detail.requestConfig.elt;
    if (live && elt && elt.hasAttribute && elt.hasAttribute("data-action")) e.detail.shouldSwap = false;
  });

  // After the socket was down, fetch every part again (pushes may have been missed).
  document.addEventListener("resync", function () {
    htmx.ajax("GET", "/ui/panel", { swap: "none" });
  });
})();
