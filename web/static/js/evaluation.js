// Remote evaluation in the browser: the running total of a member's scores, and signing the report.
// The report is signed over its 32 sha256 bytes with ECDSA P-256 / SHA-256 (engine/evaluation.py), using the
// PKCS#8 key file the expert selects locally (WebCrypto, webcrypto.js); only the signature, DER-encoded, is sent.
(function () {
  "use strict";

  const webcrypto = window.ggzyWebCrypto;  // webcrypto.js, loaded first

  function fromHex(text) {
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
    return out;
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
        const der = await webcrypto.signDer(await file.text(), fromHex(form.dataset.sha256));
        form.querySelector(".signature-b64").value = webcrypto.b64encode(der);
        form.dataset.signed = "1";
        form.submit();
      } catch (err) {
        status.textContent = "签名失败 (signing failed): " + err.message;
      }
    });
  });
})();
