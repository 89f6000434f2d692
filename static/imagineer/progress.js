// Pages of long jobs: a form with data-confirm (a run's Cancel) asks before it
// is sent, and an <img data-refresh-src> (a generation's preview) is fetched
// again every few seconds without reloading the page.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var images = document.querySelectorAll("img[data-refresh-src]");
    Array.prototype.forEach.call(images, function (img) {
      var every = 1000 * (parseFloat(img.getAttribute("data-refresh-seconds")) || 2);
      img.addEventListener("error", function () { img.hidden = true; });
      img.addEventListener("load", function () { img.hidden = false; });
      window.setInterval(function () {
        img.src = img.getAttribute("data-refresh-src") + "?t=" + Date.now();
      }, every);
    });
  });
})();
