// The review grid (templates/admin/labeling/review/grid.html), keyboard first.
// J/K move, A approve, R reject, U unreviewed, N toggle NSFW, E edit the caption, X select,
// click / Shift+click select, ? help. Every change is one JSON POST to the grid's
// act URL; the answer redraws the changed cards, and an error is shown on the
// page while the card (and any caption being typed) stays as it was.
(function () {
  "use strict";

  var STATES = { unreviewed: "Unreviewed", approved: "Approved", rejected: "Rejected" };
  var root, cards, current = -1, anchor = -1;

  function $(selector, scope) { return (scope || document).querySelector(selector); }

  function csrfToken() {
    var input = $("input[name=csrfmiddlewaretoken]", root);
    return input ? input.value : "";
  }

  function say(text, isError) {
    var status = $("#review-status");
    status.textContent = text;
    status.classList.toggle("is-error", Boolean(isError));
  }

  function focusCard(index) {
    if (index < 0 || index >= cards.length) { return; }
    if (current >= 0) { cards[current].classList.remove("is-current"); }
    current = index;
    var card = cards[current];
    card.classList.add("is-current");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var target = current + step;
    if (target >= cards.length && root.dataset.nextUrl) {
      window.location.href = root.dataset.nextUrl;
    } else if (target < 0 && root.dataset.prevUrl) {
      // The previous page opens on its last card.
      window.location.href = root.dataset.prevUrl + "#last";
    } else {
      focusCard(Math.max(0, Math.min(cards.length - 1, target)));
    }
  }

  function selected() {
    return cards.filter(function (card) { return card.getAttribute("aria-selected") === "true"; });
  }

  function setSelected(card, on) {
    card.setAttribute("aria-selected", on ? "true" : "false");
  }

  function countSelection() {
    var count = $("#review-selected-count");
    if (count) { count.textContent = String(selected().length); }
  }

  function selectRange(from, to) {
    var low = Math.min(from, to), high = Math.max(from, to);
    for (var i = low; i <= high; i += 1) { setSelected(cards[i], true); }
  }

  function redraw(data) {
    var card = $('.review-card[data-id="' + data.id + '"]', root);
    if (!card) { return; }
    card.dataset.review = data.review;
    card.dataset.nsfw = data.is_nsfw ? "true" : "false";
    $(".review-state", card).textContent = STATES[data.review] || data.review;
    $(".review-nsfw", card).hidden = !data.is_nsfw;
    var caption = $(".review-caption", card);
    caption.textContent = data.caption || "No caption yet";
    caption.title = data.caption_reason;
    caption.classList.toggle("is-empty", !data.caption);
    var tags = $(".review-tags", card);
    tags.textContent = "";
    data.tags.forEach(function (tag) {
      var item = document.createElement("li");
      item.textContent = tag;
      tags.appendChild(item);
    });
    card.classList.remove("is-busy", "has-error");
  }

  function act(action, targets, extra) {
    if (!targets.length) { say("Select some images first (X or click).", true); return Promise.resolve(false); }
    var body = Object.assign({ action: action, ids: targets.map(function (c) { return Number(c.dataset.id); }) }, extra || {});
    targets.forEach(function (card) { card.classList.add("is-busy"); });
    return fetch(root.dataset.actUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return { error: "The server answered " + response.status + "." }; })
        .then(function (answer) {
          if (!response.ok || answer.error) { throw new Error(answer.error || ("The server answered " + response.status + ".")); }
          answer.cards.forEach(redraw);
          say(targets.length === 1 ? "Saved." : "Saved " + targets.length + " images.", false);
          return true;
        });
    }).catch(function (error) {
      targets.forEach(function (card) { card.classList.remove("is-busy"); card.classList.add("has-error"); });
      say("Not saved: " + error.message, true);
      return false;
    });
  }

  function editCaption(card) {
    var editor = $(".review-edit", card), box = $("textarea", editor);
    editor.hidden = false;
    $(".review-caption", card).hidden = true;
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function closeEditor(card) {
    $(".review-edit", card).hidden = true;
    $(".review-caption", card).hidden = false;
    card.focus({ preventScroll: true });
  }

  function onEditorKey(event) {
    var card = event.target.closest(".review-card");
    if (event.key === "Escape") {
      event.preventDefault();
      var caption = $(".review-caption", card);
      event.target.value = caption.classList.contains("is-empty") ? "" : caption.textContent;
      closeEditor(card);
    } else if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      act("caption", [card], { caption: event.target.value }).then(function (saved) {
        if (saved) { closeEditor(card); }  // on error the typed text stays
      });
    }
  }

  function toggleHelp() {
    var help = $("#review-help"), button = $("#review-help-toggle");
    help.hidden = !help.hidden;
    button.setAttribute("aria-expanded", help.hidden ? "false" : "true");
  }

  function onKey(event) {
    if (event.target.closest && event.target.closest(".review-edit")) { onEditorKey(event); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName)) { return; }
    var card = cards[current], canChange = root.dataset.canChange === "true";
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    var handled = true;
    if (key === "j") { move(1); }
    else if (key === "k") { move(-1); }
    else if (key === "?") { toggleHelp(); }
    else if (key === "Escape" && !$("#review-help").hidden) { toggleHelp(); }
    else if (!card) { handled = false; }
    else if (key === "x") { setSelected(card, card.getAttribute("aria-selected") !== "true"); anchor = current; countSelection(); }
    else if (!canChange) { handled = false; }
    else if (key === "a") { act("approve", [card]); }
    else if (key === "r") { act("reject", [card]); }
    else if (key === "u") { act("unreviewed", [card]); }
    else if (key === "n") { act(card.dataset.nsfw === "true" ? "safe" : "nsfw", [card]); }
    else if (key === "e") { editCaption(card); }
    else { handled = false; }
    if (handled) { event.preventDefault(); }
  }

  function onClick(event) {
    var card = event.target.closest(".review-card");
    if (!card || event.target.closest("a, textarea, .review-edit")) { return; }
    var index = cards.indexOf(card);
    if (event.shiftKey && anchor >= 0) {
      selectRange(anchor, index);
      window.getSelection().removeAllRanges();  // Shift+click also selects text
    } else {
      setSelected(card, card.getAttribute("aria-selected") !== "true");
      anchor = index;
    }
    focusCard(index);
    countSelection();
  }

  function onBulk(event) {
    var action = event.target.dataset.bulk;
    if (action === "clear") {
      cards.forEach(function (card) { setSelected(card, false); });
      countSelection();
      return;
    }
    act(action, selected());
  }

  document.addEventListener("DOMContentLoaded", function () {
    root = document.getElementById("review");
    if (!root) { return; }
    cards = Array.prototype.slice.call(root.querySelectorAll(".review-card"));
    document.addEventListener("keydown", onKey);
    root.addEventListener("click", onClick);
    root.querySelectorAll("[data-bulk]").forEach(function (button) { button.addEventListener("click", onBulk); });
    $("#review-help-toggle").addEventListener("click", toggleHelp);
    focusCard(window.location.hash === "#last" ? cards.length - 1 : 0);
  });
}());
