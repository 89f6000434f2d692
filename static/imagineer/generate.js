// The generate form's LoRA list: a weight slider mirrors its number field;
// clicking a trigger word puts it in the prompt; ticking LoRAs sets the base
// model they were made for, with that model's own size and steps, and a mix
// of base models is named at once (the server refuses it too).
(function () {
  "use strict";
  const picker = document.querySelector(".lora-picker");
  if (!picker) return;
  const form = picker.closest("form");
  const field = (name) => form.elements.namedItem(name);
  const mixNote = picker.querySelector(".lora-picker-mix");

  for (const slider of picker.querySelectorAll("input[data-weight-for]")) {
    const number = document.getElementById(slider.dataset.weightFor);
    slider.addEventListener("input", () => { number.value = slider.value; });
    number.addEventListener("input", () => { slider.value = number.value; });
  }

  for (const button of picker.querySelectorAll(".trigger-word")) {
    button.addEventListener("click", () => {
      const prompt = field("prompt");
      const word = button.dataset.word;
      const start = prompt.selectionStart ?? prompt.value.length;
      const before = prompt.value.slice(0, start);
      const gap = before && !/[\s,]$/.test(before) ? ", " : "";
      prompt.value = `${before}${gap}${word}, ${prompt.value.slice(start)}`.replace(/,\s*$/, "");
      prompt.focus();
    });
  }

  function follow() {
    const ticked = [...picker.querySelectorAll(".lora-row")].filter(
      (row) => row.querySelector('input[type="checkbox"]').checked,
    );
    const models = [...new Set(ticked.map((row) => row.dataset.baseModel).filter(Boolean))];
    mixNote.hidden = models.length < 2;
    mixNote.textContent = models.length < 2 ? "" :
      `These LoRAs were made for different base models (${models.join(", ")}): pick LoRAs of one base model.`;
    if (models.length !== 1) return;
    const row = ticked.find((r) => r.dataset.baseModel === models[0]);
    field("base_model").value = models[0];
    for (const name of ["width", "height", "steps"]) field(name).value = row.dataset[name];
  }

  for (const box of picker.querySelectorAll('.lora-row input[type="checkbox"]')) {
    box.addEventListener("change", follow);
  }
})();
