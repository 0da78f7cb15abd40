// Loaded in <head> without defer, before the first paint, so the page never flashes the
// wrong theme: the remembered choice, else what the system prefers. (A file, not an inline
// script: the Content-Security-Policy runs scripts from this site only.)
(function () {
  var saved = null;
  try { saved = localStorage.getItem("theme"); } catch (e) {}
  var dark = saved ? saved === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-bs-theme", dark ? "dark" : "light");
})();
