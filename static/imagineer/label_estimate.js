// "Label with Claude": show the cost estimate that matches the form's style and
// "Re-label images already labeled" choices (templates/admin/labeling/_estimate.html).
(function () {
  "use strict";
  function update() {
    const style = document.querySelector('[name="style"]');
    const force = document.querySelector('[name="force"]');
    if (!style) return;
    const key = style.value + "-" + (force && force.checked ? 1 : 0);
    document.querySelectorAll("[data-estimate]").forEach(function (line) {
      line.hidden = line.dataset.estimate !== key;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    update();
    document.addEventListener("change", function (event) {
      if (event.target.name === "style" || event.target.name === "force") update();
    });
  });
})();
