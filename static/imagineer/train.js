// The admin's "Start a training run" page: choosing a preset fills the config
// fields; changing the base model, steps, resolution, batch or an option that
// makes a step dearer asks the server for the time estimate (measured step
// times of this device).
(function () {
  "use strict";
  const configs = JSON.parse(
    document.getElementById("train-preset-configs").textContent,
  );
  const form = document.getElementById("trainingrun_form");
  const estimate = document.getElementById("train-estimate");
  // What the estimate depends on: sizes, and the options that make a step dearer.
  const shown = [
    "base_model", "steps", "resolution", "batch_size", "gradient_accumulation",
    "lora_targets", "train_text_encoder", "gradient_checkpointing",
  ];

  function field(name) {
    return form.elements.namedItem(name);
  }

  function fill(key) {
    for (const [name, value] of Object.entries(configs[key] || {})) {
      const input = field(name);
      if (!input) continue;
      if (input.type === "checkbox") input.checked = Boolean(value);
      else input.value = value;
    }
    refresh();
  }

  let asked = 0;
  async function refresh() {
    const query = new URLSearchParams();
    for (const name of shown) {
      const input = field(name);
      query.set(name, input.type === "checkbox" ? (input.checked ? "on" : "") : input.value);
    }
    const mine = ++asked;
    try {
      const response = await fetch(`${estimate.dataset.url}?${query}`);
      const body = await response.json();
      if (mine === asked) estimate.querySelector("strong").textContent = body.text;
    } catch (error) {
      estimate.querySelector("strong").textContent = "unknown";
    }
  }

  for (const radio of form.querySelectorAll('input[name="preset"]')) {
    radio.addEventListener("change", () => radio.checked && fill(radio.value));
  }
  for (const name of shown) field(name).addEventListener("change", refresh);
  refresh();
})();
