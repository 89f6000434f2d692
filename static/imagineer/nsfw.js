// Staff see NSFW images blurred (.nsfw-blur); the #nsfw-toggle button reveals them
// and the choice is remembered in this browser's localStorage.
(function () {
  "use strict";
  var KEY = "imagineer:show-nsfw";
  var root = document.documentElement;

  function stored() {
    try { return window.localStorage.getItem(KEY) === "1"; } catch (e) { return false; }
  }

  function apply(show) {
    root.classList.toggle("show-nsfw", show);
    var button = document.getElementById("nsfw-toggle");
    if (button) {
      button.setAttribute("aria-pressed", show ? "true" : "false");
      button.textContent = show ? "Hide NSFW" : "Show NSFW";
    }
  }

  apply(stored());
  document.addEventListener("DOMContentLoaded", function () {
    apply(stored());
    var button = document.getElementById("nsfw-toggle");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var show = !root.classList.contains("show-nsfw");
      try { window.localStorage.setItem(KEY, show ? "1" : "0"); } catch (e) { /* private mode */ }
      apply(show);
    });
  });
})();
