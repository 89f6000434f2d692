// The album upload page: drop files and whole folders onto the drop zone, or
// choose them with the inputs; see the list (sizes, which .txt is whose
// caption) and a count; then the same form posts them all as `files`, with
// each one's path in the folder as `paths` (in the same order), so the server
// pairs card.txt with card.png as the folder import does (albums.services:
// upload_sidecars). Without this script the inputs post as they are.
(function () {
  "use strict";

  function sizeText(bytes) {
    const units = ["bytes", "KB", "MB", "GB"];
    let n = bytes;
    let unit = 0;
    while (n >= 1024 && unit < units.length - 1) {
      n /= 1024;
      unit += 1;
    }
    return (unit ? n.toFixed(1) : String(n)) + " " + units[unit];
  }

  function splitName(path) {
    const dot = path.lastIndexOf(".");
    const slash = path.lastIndexOf("/");
    if (dot <= slash + 1) return [path, ""];
    return [path.slice(0, dot), path.slice(dot).toLowerCase()];
  }

  // Every file under a dropped folder entry, with its path ("deck/card.png").
  function walk(entry, found) {
    if (entry.isFile) {
      return new Promise(function (resolve) {
        entry.file(
          function (file) {
            found.push({ file: file, path: entry.fullPath.replace(/^\/+/, "") });
            resolve();
          },
          function () { resolve(); }
        );
      });
    }
    if (!entry.isDirectory) return Promise.resolve();
    const reader = entry.createReader();
    return new Promise(function (resolve) {
      const children = [];
      // readEntries answers in batches until it answers none.
      function more() {
        reader.readEntries(function (batch) {
          if (!batch.length) {
            Promise.all(children.map(function (child) { return walk(child, found); }))
              .then(function () { resolve(); });
            return;
          }
          children.push.apply(children, batch);
          more();
        }, function () { resolve(); });
      }
      more();
    });
  }

  function fromDrop(dataTransfer) {
    const found = [];
    const walks = [];
    const items = Array.from(dataTransfer.items || []);
    items.forEach(function (item) {
      const entry = item.kind === "file" && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
      if (entry) {
        walks.push(walk(entry, found));
      } else if (item.kind === "file") {
        const file = item.getAsFile();
        if (file) found.push({ file: file, path: file.name });
      }
    });
    if (!items.length) {
      Array.from(dataTransfer.files || []).forEach(function (file) {
        found.push({ file: file, path: file.name });
      });
    }
    return Promise.all(walks).then(function () { return found; });
  }

  function setUp(zone) {
    const form = document.getElementById(zone.dataset.form);
    const filesInput = form && form.querySelector('input[type="file"][name="files"]');
    const folderInput = form && form.querySelector('input[type="file"][name="folder"]');
    if (!filesInput || typeof DataTransfer === "undefined") return;
    const imageTypes = (zone.dataset.imageExtensions || "").split(" ");
    const summary = document.getElementById("upload-summary");
    const list = document.getElementById("upload-list");
    const paths = document.createElement("div");
    form.appendChild(paths);
    let chosen = [];

    function notes() {
      const images = {};
      chosen.forEach(function (c) {
        const [stem, ext] = splitName(c.path);
        if (imageTypes.indexOf(ext) >= 0 && !(stem in images)) images[stem] = c.path;
      });
      return chosen.map(function (c) {
        const [stem, ext] = splitName(c.path);
        if (imageTypes.indexOf(ext) >= 0 || ext === ".zip") return null;
        if (stem in images) return { text: "caption of " + images[stem], alone: false };
        if (ext === ".txt") return { text: "no image beside it: reported, not imported", alone: true };
        return null;
      });
    }

    function show() {
      const total = chosen.reduce(function (sum, c) { return sum + c.file.size; }, 0);
      const marks = notes();
      const captions = marks.filter(function (m) { return m && !m.alone; }).length;
      summary.textContent = chosen.length
        ? chosen.length + " file" + (chosen.length === 1 ? "" : "s") + " chosen, " +
          sizeText(total) + (captions ? " (" + captions + " caption file" + (captions === 1 ? "" : "s") + ")" : "")
        : "Nothing chosen yet.";
      list.replaceChildren();
      chosen.forEach(function (c, i) {
        const li = document.createElement("li");
        li.textContent = c.path;
        const size = document.createElement("span");
        size.className = "upload-size";
        size.textContent = sizeText(c.file.size);
        li.appendChild(size);
        if (marks[i]) {
          const note = document.createElement("span");
          note.className = "upload-note" + (marks[i].alone ? " upload-alone" : "");
          note.textContent = marks[i].text;
          li.appendChild(note);
        }
        list.appendChild(li);
      });
    }

    // The files input carries everything chosen; `paths` follow in its order.
    function sync() {
      const transfer = new DataTransfer();
      chosen.forEach(function (c) { transfer.items.add(c.file); });
      filesInput.files = transfer.files;
      if (folderInput) folderInput.value = "";
      paths.replaceChildren();
      chosen.forEach(function (c) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = "paths";
        input.value = c.path;
        paths.appendChild(input);
      });
      show();
    }

    function add(found) {
      const seen = new Set(chosen.map(function (c) { return c.path + "\u0000" + c.file.size; }));
      found.forEach(function (c) {
        const key = c.path + "\u0000" + c.file.size;
        if (!seen.has(key)) {
          seen.add(key);
          chosen.push(c);
        }
      });
      sync();
    }

    function fromInput(input) {
      return Array.from(input.files).map(function (file) {
        return { file: file, path: file.webkitRelativePath || file.name };
      });
    }

    filesInput.addEventListener("change", function () {
      // The input now holds only what was just picked: keep the rest too.
      add(fromInput(filesInput));
    });
    if (folderInput) {
      folderInput.addEventListener("change", function () { add(fromInput(folderInput)); });
    }
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("is-over");
      });
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("is-over"); });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("is-over");
      fromDrop(event.dataTransfer).then(add);
    });
    zone.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    const zone = document.getElementById("upload-drop");
    if (zone) setUp(zone);
  });
})();
