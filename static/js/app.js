// Keyledger's only page script. No inline scripts anywhere, so the CSP can forbid them.

// Copy buttons: <button data-copy="input-id">. Falls back to selecting the text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  if (!input) return;
  const status = document.getElementById("copy-status");
  const label = button.querySelector("span") || button;
  input.focus();
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    label.textContent = "Copied";
    button.classList.add("success");
    if (status) status.textContent = "The key is on your clipboard. Paste it somewhere safe now.";
    clearTimeout(button._reset);
    button._reset = setTimeout(() => {
      label.textContent = "Copy";
      button.classList.remove("success");
    }, 4000);
  } catch (err) {
    if (status) status.textContent = "The key is selected: press Ctrl+C (⌘C on a Mac) to copy it.";
  }
});

// The once-only key: selecting the field selects the whole key, never half of it.
document.addEventListener("focusin", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && input.readOnly && input.id === "new-key") input.select();
});
