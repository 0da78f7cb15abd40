// The session details page's charts: a candlestick chart per symbol with buy/sell markers,
// and the equity curve (lightweight-charts 5, vendored). Data comes from chart.json (the URL
// is in #session-charts[data-chart-url]); the charts are made once and then fed: the first
// answer with setData, later ones (?since=) with update. Polls every 2 s while the page is
// visible. Tables and metrics are htmx's business, not this file's.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var LC = window.LightweightCharts;

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function themeOptions() {
    var dark = document.documentElement.getAttribute("data-bs-theme") === "dark";
    var grid = dark ? "rgba(255, 255, 255, 0.06)" : "rgba(0, 0, 0, 0.06)";
    var border = cssVar("--bs-border-color", dark ? "#495057" : "#dee2e6");
    return {
      layout: {
        background: { type: LC.ColorType.Solid, color: cssVar("--bs-body-bg", dark ? "#212529" : "#ffffff") },
        textColor: cssVar("--bs-body-color", dark ? "#dee2e6" : "#212529"),
      },
      grid: { vertLines: { color: grid }, horzLines: { color: grid } },
      rightPriceScale: { borderColor: border },
      timeScale: { borderColor: border },
    };
  }

  function makeChart(el, timeScale) {
    var options = themeOptions();
    options.autoSize = true; // follows the container's size (ResizeObserver)
    options.timeScale.timeVisible = true;
    options.timeScale.secondsVisible = true;
    Object.keys(timeScale || {}).forEach(function (k) { options.timeScale[k] = timeScale[k]; });
    options.crosshair = { mode: LC.CrosshairMode.Normal };
    return LC.createChart(el, options);
  }

  // --- the charts -------------------------------------------------------------------------

  function CandleChart(el) {
    this.el = el;
    this.symbol = el.getAttribute("data-symbol");
    // Candles keep their width and a short history sits at the right edge; room is left
    // after the newest bar for its marker's label.
    this.chart = makeChart(el, { barSpacing: 12, rightOffset: 3 });
    this.series = this.chart.addSeries(LC.CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
      wickUpColor: "#26a69a", wickDownColor: "#ef5350",
    });
    this.markers = LC.createSeriesMarkers(this.series, []);
    this.first = null; // time of the oldest and newest candle shown
    this.last = null;
    this.count = 0;
    this.markerKey = "";
  }

  CandleChart.prototype.apply = function (candles, markers, full) {
    if (full) {
      this.series.setData(candles);
      this.count = candles.length;
      this.first = candles.length ? candles[0].time : null;
      this.last = candles.length ? candles[candles.length - 1].time : null;
    } else {
      for (var i = 0; i < candles.length; i++) {
        var c = candles[i];
        if (this.last !== null && c.time < this.last) continue; // update() takes no past bar
        if (this.last === null || c.time > this.last) this.count += 1;
        this.series.update(c);
        if (this.first === null) this.first = c.time;
        this.last = c.time;
      }
    }
    // Markers only where there are candles: the plugin is given the whole list each time.
    var first = this.first, last = this.last;
    var shown = (markers || []).filter(function (m) {
      return first !== null && m.time >= first && m.time <= last;
    });
    var key = JSON.stringify(shown);
    if (key !== this.markerKey) {
      this.markers.setMarkers(shown);
      this.markerKey = key;
    }
    this.el.setAttribute("data-candles", String(this.count));
    this.el.setAttribute("data-markers", String(shown.length));
    showEmpty(this.el, this.count === 0);
  };

  function EquityChart(el) {
    this.el = el;
    // The whole curve spans the width, however few points it has (zooming in still works).
    this.chart = makeChart(el, { fixLeftEdge: true, fixRightEdge: true });
    this.series = this.chart.addSeries(LC.AreaSeries, {
      lineColor: "#0d6efd", topColor: "rgba(13, 110, 253, 0.35)", bottomColor: "rgba(13, 110, 253, 0.02)",
      lineWidth: 2,
    });
    this.last = null;
    this.count = 0;
  }

  EquityChart.prototype.apply = function (points, full) {
    if (full) {
      this.series.setData(points);
      this.count = points.length;
      this.last = points.length ? points[points.length - 1].time : null;
    } else {
      for (var i = 0; i < points.length; i++) {
        var p = points[i];
        if (this.last !== null && p.time < this.last) continue;
        if (this.last === null || p.time > this.last) this.count += 1;
        this.series.update(p);
        this.last = p.time;
      }
    }
    this.el.setAttribute("data-points", String(this.count));
    showEmpty(this.el, this.count === 0);
  };

  function showEmpty(el, empty) {
    var note = el.parentNode.querySelector(".chart-empty");
    if (note) note.hidden = !empty;
  }

  // --- polling ------------------------------------------------------------------------------

  function start(root) {
    var url = new URL(root.getAttribute("data-chart-url"), window.location.href);
    var status = document.getElementById("chart-status");
    var badge = document.getElementById("simulated-badge");
    var prices = document.getElementById("chart-prices");
    var candleCharts = [];
    root.querySelectorAll('[data-chart="candles"]').forEach(function (el) { candleCharts.push(new CandleChart(el)); });
    var equityEl = root.querySelector('[data-chart="equity"]');
    var equity = equityEl ? new EquityChart(equityEl) : null;
    var all = candleCharts.map(function (c) { return c.chart; });
    if (equity) all.push(equity.chart);

    var loaded = false;
    var timer = null;
    var inflight = false;
    var hiddenSince = null;

    function since() {
      // The oldest "newest time" of every series: from there on, everything may have changed.
      var times = candleCharts.map(function (c) { return c.last; });
      if (equity) times.push(equity.last);
      times = times.filter(function (t) { return t !== null; });
      return times.length ? Math.min.apply(null, times) : null;
    }

    function say(text) {
      if (status && status.textContent !== text) status.textContent = text;
    }

    function apply(data) {
      var full = !!data.full;
      candleCharts.forEach(function (c) {
        c.apply((data.candles || {})[c.symbol] || [], (data.markers || {})[c.symbol] || [], full);
      });
      if (equity) equity.apply(data.equity || [], full);
      if (data.simulated && badge) badge.hidden = false;
      // Where the charted bars come from ("Simulated, 60x"...), once there are bars.
      var labels = (data.prices || []).join("; ");
      if (prices && labels && prices.textContent !== labels) prices.textContent = labels;
      say(data.warning || "");
      loaded = true;
      root.setAttribute("data-loaded", "true");
    }

    function schedule() {
      clearTimeout(timer);
      timer = null;
      if (document.visibilityState === "visible") timer = setTimeout(refresh, POLL_MS);
    }

    function refresh() {
      if (inflight) return;
      inflight = true;
      var request = new URL(url.href);
      var from = loaded ? since() : null;
      if (from !== null) request.searchParams.set("since", String(from));
      fetch(request.href, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          var type = response.headers.get("Content-Type") || "";
          if (type.indexOf("application/json") === -1) {
            throw new Error("the chart data did not come back (" + response.status + "); are you still logged in?");
          }
          return response.json().then(function (body) {
            if (!response.ok) throw new Error(body.detail || "the server answered " + response.status);
            return body;
          });
        })
        .then(apply)
        .catch(function (err) { say("Chart data unavailable: " + err.message); })
        .then(function () { inflight = false; schedule(); });
    }

    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") {
        // Long away: start over rather than feed many updates.
        if (hiddenSince !== null && Date.now() - hiddenSince > 5 * 60 * 1000) loaded = false;
        hiddenSince = null;
        clearTimeout(timer);
        refresh();
      } else {
        hiddenSince = Date.now();
        clearTimeout(timer);
        timer = null;
      }
    });
    document.addEventListener("themechange", function () {
      var options = themeOptions();
      all.forEach(function (chart) { chart.applyOptions(options); });
    });
    refresh();
  }

  function init() {
    var root = document.getElementById("session-charts");
    if (!root) return;
    if (!LC) {
      var status = document.getElementById("chart-status");
      if (status) status.textContent = "The chart library did not load.";
      return;
    }
    start(root);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
