// The console's few behaviours: confirmations, copy, live location health, and uploads
// (multipart: the browser PUTs each part to a presigned URL, the server completes it).
"use strict";

const PREFIX = "/_/console";
const csrf = () => (document.querySelector('meta[name="csrf"]') || {}).content || "";

async function api(path, body) {
  const answer = await fetch(PREFIX + path, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    throw new Error((data.error || answer.status) + (data.message ? ": " + data.message : ""));
  }
  return data;
}

function putPart(url, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300 && xhr.getResponseHeader("ETag")) {
        onProgress(blob.size);
        resolve(xhr.getResponseHeader("ETag"));
      } else {
        const code = /<Code>([^<]*)<\/Code>/.exec(xhr.responseText || "");
        reject(new Error(code ? code[1] : "HTTP " + xhr.status));
      }
    };
    xhr.onerror = () => reject(new Error("network error"));
    xhr.send(blob);
  });
}

async function upload(form) {
  const file = form.querySelector("#upload-file").files[0];
  const status = form.querySelector("#upload-status");
  const bar = form.querySelector("#upload-progress");
  const button = form.querySelector("#upload-button");
  if (!file) return;
  const name = form.querySelector("#upload-name").value.trim() || file.name;
  const target = {bucket: form.dataset.bucket, key: form.dataset.prefix + name.replace(/^\/+/, "")};
  button.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  status.textContent = "Starting…";
  let uploadId = null;
  try {
    const start = await api("/api/upload/start", {...target, size: file.size, type: file.type});
    uploadId = start.uploadId;
    const done = new Array(start.parts).fill(0);
    const etags = new Array(start.parts);
    const show = () => {
      const sent = done.reduce((a, b) => a + b, 0);
      bar.value = file.size ? (100 * sent) / file.size : 100;
      status.textContent = `${Math.floor(bar.value)} % of ${file.size} bytes`;
    };
    let next = 1;
    let urls = {};
    const urlFor = async (n) => {
      if (!urls[n]) {
        const last = Math.min(start.parts, n + 99);
        urls = (await api("/api/upload/sign", {...target, uploadId, first: n, last})).urls;
      }
      return urls[n];
    };
    const worker = async () => {
      while (next <= start.parts) {
        const n = next++;
        const url = await urlFor(n);
        const blob = file.slice((n - 1) * start.partSize, Math.min(file.size, n * start.partSize));
        etags[n - 1] = await putPart(url, blob, (loaded) => { done[n - 1] = loaded; show(); });
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    status.textContent = "Completing…";
    await api("/api/upload/complete", {...target, uploadId, etags});
    bar.value = 100;
    status.textContent = `Uploaded ${target.key}`;
    status.dataset.done = "1";
    window.setTimeout(() => window.location.reload(), 300);
  } catch (error) {
    status.textContent = "Upload failed: " + error.message;
    status.dataset.failed = "1";
    if (uploadId) api("/api/upload/abort", {...target, uploadId}).catch(() => {});
  } finally {
    button.disabled = false;
  }
}

async function refreshLocations(tableElement) {
  try {
    const answer = await fetch(PREFIX + "/api/locations", {credentials: "same-origin"});
    if (!answer.ok) return;
    const health = await answer.json();
    for (const row of tableElement.querySelectorAll("tr[data-location]")) {
      const info = health[row.dataset.location];
      if (!info) continue;
      const state = row.querySelector('[data-field="state"]');
      state.textContent = info.state;
      state.className = "state " + info.state;
      row.querySelector('[data-field="lastCheck"]').textContent = info.lastCheck || "never";
      row.querySelector('[data-field="latencyMs"]').textContent =
        info.latencyMs === null ? "" : info.latencyMs + " ms";
      row.querySelector('[data-field="message"]').textContent =
        info.state === "up" ? "" : info.message || "";
    }
  } catch (error) {
    // The next refresh tries again.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => {
      const input = document.getElementById(button.dataset.copy);
      input.select();
      if (navigator.clipboard) navigator.clipboard.writeText(input.value).catch(() => {});
      button.textContent = "Copied";
    });
  }
  const uploadForm = document.getElementById("upload");
  if (uploadForm) {
    uploadForm.addEventListener("submit", (event) => {
      event.preventDefault();
      upload(uploadForm);
    });
  }
  const live = document.querySelector("table.live");
  if (live) window.setInterval(() => refreshLocations(live), 5000);
});
