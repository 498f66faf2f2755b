// Remote evaluation in the browser: the running total of a member's scores, and signing the report.
// The report is signed over its 32 sha256 bytes with ECDSA P-256 / SHA-256 (engine/evaluation.py), using the
// PKCS#8 key file the expert selects locally (WebCrypto); only the signature, DER-encoded, is sent.
(function () {
  "use strict";

  function b64decode(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function b64encode(bytes) {
    let raw = "";
    for (const b of new Uint8Array(bytes)) raw += String.fromCharCode(b);
    return btoa(raw);
  }

  function pemBody(text) {
    const match = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(text);
    if (!match) throw new Error("不是 PKCS#8 私钥文件（-----BEGIN PRIVATE KEY-----） (not a PKCS#8 PEM key file)");
    return b64decode(match[1].replace(/\s+/g, ""));
  }

  function fromHex(text) {
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
    return out;
  }

  function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  // WebCrypto signs ECDSA as r || s (IEEE P1363); the platform verifies DER (X9.62).
  function derSignature(raw) {
    function integer(bytes) {
      let i = 0;
      while (i < bytes.length - 1 && bytes[i] === 0) i++;
      let body = bytes.slice(i);
      if (body[0] & 0x80) body = concat(new Uint8Array([0]), body);
      return concat(new Uint8Array([0x02, body.length]), body);
    }
    const r = integer(new Uint8Array(raw.slice(0, 32)));
    const s = integer(new Uint8Array(raw.slice(32)));
    return concat(new Uint8Array([0x30, r.length + s.length]), concat(r, s));
  }

  async function signDigest(pemText, sha256Hex) {
    const subtle = window.crypto.subtle;
    const key = await subtle.importKey("pkcs8", pemBody(pemText), { name: "ECDSA", namedCurve: "P-256" }, false,
      ["sign"]);
    const raw = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, fromHex(sha256Hex));
    return derSignature(new Uint8Array(raw));
  }

  // Cents as integers, so the running total is exact.
  function cents(text) {
    const match = /^\s*([0-9]+)(?:\.([0-9]{1,2}))?\s*$/.exec(text || "");
    return match ? Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0")) : null;
  }

  function showTotals() {
    document.querySelectorAll("tr.score-row").forEach(function (row) {
      let total = cents(row.querySelector(".price-score").dataset.score) || 0;
      let complete = true;
      row.querySelectorAll("input.score").forEach(function (input) {
        const value = cents(input.value);
        if (value === null) complete = false; else total += value;
      });
      row.querySelector(".score-total").textContent = (complete ? "" : "≥ ") + (total / 100).toFixed(2);
    });
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches("input.score")) showTotals();
  });
  showTotals();

  document.querySelectorAll("form.report-sign").forEach(function (form) {
    form.addEventListener("submit", async function (event) {
      const file = form.querySelector("input.sign-key").files[0];
      if (!file || form.dataset.signed) return;  // an uploaded signature file goes as it is
      event.preventDefault();
      const status = form.querySelector(".sign-status");
      try {
        status.textContent = "正在签名… (signing)";
        const der = await signDigest(await file.text(), form.dataset.sha256);
        form.querySelector(".signature-b64").value = b64encode(der);
        form.dataset.signed = "1";
        form.submit();
      } catch (err) {
        status.textContent = "签名失败 (signing failed): " + err.message;
      }
    });
  });
})();
