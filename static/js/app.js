// Copy buttons: <button data-copy="input-id">. No inline scripts, so the CSP can forbid them.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  const status = document.getElementById("copy-status");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = "Copied";
    if (status) status.textContent = "The key is on your clipboard.";
  } catch (err) {
    document.execCommand("copy");
    if (status) status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
});
