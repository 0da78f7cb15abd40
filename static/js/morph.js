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

  htmx.defineExtension("morph", {
    isInlineSwap: function (style) { return style === "morph"; },
    handleSwap: function (style, target, fragment) {
      if (style !== "morph") return false;
      return Idiomorph.morph(target, fragment.children, config);
    },
  });
})();
