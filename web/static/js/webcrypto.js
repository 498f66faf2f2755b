// WebCrypto helpers shared by the bid pages (bids.js) and the evaluation pages (evaluation.js): base64, the
// bidder's or expert's PKCS#8 key file, and ECDSA P-256 / SHA-256 signatures in the DER form the platform verifies
// (engine/pki.py verify_signature). Load this script before the page's own script.
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

  // Import a P-256 private key from the text of a PKCS#8 PEM file, for "ECDSA" (signing) or "ECDH" (unwrapping).
  function importPrivateKey(pemText, name, usages) {
    return window.crypto.subtle.importKey("pkcs8", pemBody(pemText), { name: name, namedCurve: "P-256" }, false,
      usages);
  }

  function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  // WebCrypto signs ECDSA as r || s (IEEE P1363); the platform verifies DER (X9.62), as OpenSSL writes it.
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

  // Sign data with the ECDSA P-256 key of a PKCS#8 PEM file (SHA-256); return the DER signature bytes.
  async function signDer(pemText, data) {
    const key = await importPrivateKey(pemText, "ECDSA", ["sign"]);
    const raw = await window.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, data);
    return derSignature(new Uint8Array(raw));
  }

  window.ggzyWebCrypto = {
    b64decode: b64decode, b64encode: b64encode, concat: concat, importPrivateKey: importPrivateKey,
    derSignature: derSignature, signDer: signDer,
  };
})();
