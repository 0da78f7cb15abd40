// Live pushes and action answers morph a part in place (idiomorph) instead of replacing it:
// the nodes that did not change stay the same nodes, so the focused button keeps the focus,
// a button held down stays pressed, an open <select> stays open and a text selection stays,
// and a push identical to what is shown changes nothing at all.
//
// Used as hx-swap="morph" / hx-swap-oob="morph" under hx-ext="morph".
(function () {
  "use strict";
  if (!window.htmx || !window.Idiomorph) return;

  var config = { morphStyle: "outerHTML" };

  // --- the keyboard focus when acting changes the focused control itself ----------------
  // Pressing a control can take its focus away twice: htmx disables it while its request
  // runs (and the browser blurs a disabled control), and the new state can bring another
  // control in its place (Stop becomes Start, Pause becomes Resume). Either way the focus
  // fell to <body> and a keyboard user had to Tab back from the top. So a control that
  // lost the focus that way is remembered with its part (the nearest ancestor with an
  // id: a card, a row, a panel), and after each swap and each finished request the focus
  // goes back: to the control itself once it can be used again, else to the part's
  // control doing the same action, else to the part's first usable action, else to the
  // part itself. A person who moved the focus elsewhere (or clicked away) is left alone.
  var lost = null;  // {el, part, action, holding}

  function partOf(el) {
    var part = el.parentElement && el.parentElement.closest("[id]");
    return part ? part.id : null;
  }
  function remember(el, part) {
    if (!el || el === document.body || !el.closest) return;
    lost = { el: el, part: part || partOf(el), action: el.getAttribute("data-action"), holding: false };
  }
  function usable(el) {
    return el && el.isConnected && !el.disabled && el.getClientRects().length > 0;
  }
  function focusFellAway() {
    var active = document.activeElement;
    return !active || active === document.body || active === document.documentElement;
  }
  // The part holds the focus while it offers no usable action (a session stopping): a
  // morph drops the tabindex the server does not render, and with it the focus, so it is
  // put back at once, before the browser moves the focus away.
  function holdable(part) {
    if (!part.hasAttribute("tabindex")) part.setAttribute("tabindex", "-1");
  }
  function refocus() {
    if (!lost) return;
    var part = lost.part && document.getElementById(lost.part);
    var active = document.activeElement;
    var stillOurs = focusFellAway() || (lost.holding && active === part);
    if (!stillOurs) { lost = null; return; }
    var el = lost.el;
    // Its request is still running: the answer (or the push it causes) decides what comes.
    if (el.isConnected && el.classList.contains("htmx-request")) return;
    var target = null;
    if (usable(el)) {
      target = el;
    } else if (part) {
      var actions = Array.prototype.filter.call(part.querySelectorAll("[data-action]"), usable);
      target = actions.filter(function (b) { return b.getAttribute("data-action") === lost.action; })[0] || actions[0];
    }
    if (!target && part) {
      // Nothing to press yet: the part keeps the focus until its actions come back.
      holdable(part);
      if (active !== part) { lost.holding = true; part.focus({ preventScroll: true }); }
      return;
    }
    lost = null;
    if (target) target.focus({ preventScroll: true });
  }

  // A control disabled while focused (htmx's hx-disabled-elt during its request).
  document.addEventListener("focusout", function (e) {
    if (!e.relatedTarget && e.target.disabled) remember(e.target);
  });
  // The person put the focus somewhere, or clicked away: their choice stands.
  document.addEventListener("focusin", function (e) {
    if (lost && lost.holding && e.target.id === lost.part) return;
    lost = null;
  });
  document.addEventListener("pointerdown", function () { lost = null; }, true);
  // htmx has re-enabled the control by the time it announces the end of its request.
  document.addEventListener("htmx:afterRequest", refocus);

  htmx.defineExtension("morph", {
    isInlineSwap: function (style) { return style === "morph"; },
    handleSwap: function (style, target, fragment) {
      if (style !== "morph") return false;
      var active = document.activeElement;
      var inside = active && active !== target && target.contains(active);
      var part = inside ? partOf(active) : null;  // read while it is still in the page
      var result = Idiomorph.morph(target, fragment.children, config);
      // A control morphed into another (Pause -> Resume: same node, new hx-post) keeps
      // htmx's old handler until htmx processes it at settle time, 20 ms on: an Enter in
      // between posted the old action. Process now, before the focus comes back.
      htmx.process(target);
      if (lost && lost.holding) {
        var held = document.getElementById(lost.part);
        if (held && held === document.activeElement) holdable(held);
      }
      // The focused control was replaced by the swap (a control of another kind).
      if (inside && !active.isConnected && focusFellAway()) remember(active, part);
      refocus();
      return result;
    },
  });
})();
