// Passkey ceremonies (WebAuthn): the server's JSON options in, the credential out as
// JSON (base64url), each posted with the page's CSRF token. No inline script (CSP).

const b64urlToBuf = (s) => {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
};
const bufToB64url = (buf) =>
  btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

async function postJSON(url, csrf, body) {
  const resp = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify(body || {}),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || `The server answered ${resp.status}.`);
  return data;
}

function showError(message) {
  const box = document.getElementById("passkey-error");
  if (box) {
    box.textContent = message;
    box.hidden = false;
  }
}

function credentialJSON(cred) {
  const r = cred.response;
  const out = { id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type, response: {} };
  out.response.clientDataJSON = bufToB64url(r.clientDataJSON);
  if (r.attestationObject) {
    out.response.attestationObject = bufToB64url(r.attestationObject);
    if (r.getTransports) out.response.transports = r.getTransports();
  } else {
    out.response.authenticatorData = bufToB64url(r.authenticatorData);
    out.response.signature = bufToB64url(r.signature);
    if (r.userHandle) out.response.userHandle = bufToB64url(r.userHandle);
  }
  out.clientExtensionResults = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
  return out;
}

async function addPasskey(button) {
  const options = await postJSON(button.dataset.options, button.dataset.csrf);
  options.challenge = b64urlToBuf(options.challenge);
  options.user.id = b64urlToBuf(options.user.id);
  (options.excludeCredentials || []).forEach((c) => { c.id = b64urlToBuf(c.id); });
  const cred = await navigator.credentials.create({ publicKey: options });
  const name = (document.getElementById("passkey-name") || {}).value || "Passkey";
  const result = await postJSON(button.dataset.verify, button.dataset.csrf, {
    name, credential: credentialJSON(cred),
  });
  if (result.codes && result.codes.length) {
    const section = document.getElementById("passkey-codes");
    const list = section.querySelector("ul");
    result.codes.forEach((code) => {
      const item = document.createElement("li");
      const el = document.createElement("code");
      el.textContent = code;
      item.appendChild(el);
      list.appendChild(item);
    });
    section.hidden = false;
    section.focus();
  } else {
    window.location.reload();
  }
}

async function usePasskey(button) {
  const options = await postJSON(button.dataset.options, button.dataset.csrf);
  options.challenge = b64urlToBuf(options.challenge);
  (options.allowCredentials || []).forEach((c) => { c.id = b64urlToBuf(c.id); });
  const cred = await navigator.credentials.get({ publicKey: options });
  const result = await postJSON(button.dataset.verify, button.dataset.csrf, {
    credential: credentialJSON(cred),
  });
  window.location.assign(result.redirect);
}

document.addEventListener("click", (event) => {
  const add = event.target.closest("#passkey-add");
  const use = event.target.closest("#passkey-login");
  if (!add && !use) return;
  if (!window.PublicKeyCredential) {
    showError("This browser does not support passkeys.");
    return;
  }
  const run = add ? addPasskey(add) : usePasskey(use);
  run.catch((err) => showError(err.message || "The passkey did not work. Try again."));
});
