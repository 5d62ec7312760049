// Keyledger's only page script. No inline scripts anywhere, so the CSP can forbid them.

// Copy buttons: <button data-copy="input-id"> copies that field (and falls back to
// selecting it); <button data-copy-text="…" data-copy-done="…"> copies the text given,
// e.g. a key ID in the keys list. #copy-status, when the page has one, says what happened.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy], [data-copy-text]");
  if (!button) return;
  const input = button.dataset.copy ? document.getElementById(button.dataset.copy) : null;
  if (button.dataset.copy && !input) return;
  const text = input ? input.value : button.dataset.copyText;
  const status = document.getElementById("copy-status");
  const label = button.querySelector("span") || button;
  const done = button.dataset.copyDone || "The key is on your clipboard. Paste it somewhere safe now.";
  if (input) {
    input.focus();
    input.select();
  }
  try {
    await navigator.clipboard.writeText(text);
    label.textContent = "Copied";
    button.classList.add("success");
    if (status) status.textContent = done;
    clearTimeout(button._reset);
    button._reset = setTimeout(() => {
      label.textContent = "Copy";
      button.classList.remove("success");
    }, 4000);
  } catch (err) {
    if (status) {
      status.textContent = input
        ? "The key is selected: press Ctrl+C (⌘C on a Mac) to copy it."
        : "The browser did not allow copying: select the ID and copy it.";
    }
  }
});

// The once-only key: selecting the field selects the whole key, never half of it.
document.addEventListener("focusin", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && input.readOnly && input.id === "new-key") input.select();
});

// A box beside a choice (a number of days, a date): typing in it picks that choice.
for (const type of ["input", "change"]) {
  document.addEventListener(type, (event) => {
    const target = event.target;
    const id = target instanceof HTMLElement ? target.dataset.choose : undefined;
    const radio = id ? document.getElementById(id) : null;
    if (radio instanceof HTMLInputElement && target.value !== "") radio.checked = true;
  });
}

// A webhook delivery log with a pending message fetches itself again until none is
// pending, so "Send a test event" shows its result without a reload.
async function refreshLog() {
  const log = document.getElementById("delivery-log");
  if (!log || !log.dataset.refresh) return;
  await new Promise((done) => setTimeout(done, Number(log.dataset.refresh) * 1000));
  try {
    const resp = await fetch(log.dataset.logUrl, { credentials: "same-origin" });
    if (!resp.ok) return;
    log.outerHTML = await resp.text();
  } catch (err) {
    return;
  }
  refreshLog();
}
document.addEventListener("DOMContentLoaded", refreshLog);

// A long export (<a data-export-progress>): fetched here, so the page can say it is
// working and how far it is (lines read of the X-Export-Events the server counted),
// then handed to the browser as a download. Without this script the link downloads.
document.addEventListener("click", async (event) => {
  const link = event.target.closest("a[data-export-progress]");
  if (!link || link.dataset.busy) return;
  event.preventDefault();
  const box = document.getElementById(link.dataset.exportProgress);
  const bar = box.querySelector("progress");
  const said = box.querySelector("[data-export-status]");
  link.dataset.busy = "true";
  link.setAttribute("aria-disabled", "true");
  box.hidden = false;
  said.textContent = "Exporting…";
  try {
    const resp = await fetch(link.href, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const total = Number(resp.headers.get("X-Export-Events") || 0);
    bar.max = Math.max(total, 1);
    const reader = resp.body.getReader();
    const parts = [];
    let lines = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      for (const byte of value) if (byte === 10) lines += 1;
      bar.value = Math.min(lines, bar.max);
      const share = total ? ` (${Math.floor((100 * lines) / total)} %)` : "";
      said.textContent = `Exporting… ${lines.toLocaleString()} of ${total.toLocaleString()} events${share}`;
    }
    const name = (resp.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const url = URL.createObjectURL(new Blob(parts, { type: resp.headers.get("Content-Type") || "" }));
    const save = document.createElement("a");
    save.href = url;
    save.download = name ? name[1] : "export.jsonl";
    document.body.appendChild(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    bar.value = bar.max;
    said.textContent = `Done: ${lines.toLocaleString()} events exported.`;
  } catch (err) {
    said.textContent = `The export failed (${err.message}); nothing was downloaded. Try again.`;
  } finally {
    delete link.dataset.busy;
    link.removeAttribute("aria-disabled");
  }
});
