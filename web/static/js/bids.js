// Sealed bids in the browser (WebCrypto): the device fingerprint sent with a submission, and the
// opening, where the bidder's key file unwraps the content key locally. Only the content key of the
// one bid is sent to the platform; the private key never leaves this machine.
// Format: engine/seal.py (ggzy-sealed-bid/1), the reference implementation. Needs webcrypto.js.
(function () {
  "use strict";

  const FORMAT = "ggzy-sealed-bid/1";
  const WRAP_INFO = "ggzy-sealed-bid/1 content-key wrap";
  const encoder = new TextEncoder();
  const webcrypto = window.ggzyWebCrypto;  // webcrypto.js, loaded first
  const b64decode = webcrypto.b64decode;
  const b64encode = webcrypto.b64encode;
  const concat = webcrypto.concat;

  // Recover the content key of a package (parsed JSON) with a PKCS#8 PEM key: ECDH, HKDF-SHA256, AES-GCM.
  async function unwrapKey(pkg, pemText) {
    const header = pkg.header;
    if (header.format !== FORMAT) throw new Error("未知的投标文件格式 " + header.format);
    const subtle = window.crypto.subtle;
    const privateKey = await webcrypto.importPrivateKey(pemText, "ECDH", ["deriveBits"]);
    const point = b64decode(header.ephemeral_public_key);
    const ephemeral = await subtle.importKey("raw", point, { name: "ECDH", namedCurve: "P-256" }, false, []);
    const shared = await subtle.deriveBits({ name: "ECDH", public: ephemeral }, privateKey, 256);
    const hkdfKey = await subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    const info = encoder.encode(WRAP_INFO + header.recipient_key_sha256);
    const kek = await subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: point, info: info }, hkdfKey,
      { name: "AES-GCM", length: 256 }, false, ["decrypt"]);
    try {
      return await subtle.decrypt({ name: "AES-GCM", iv: b64decode(header.wrap_nonce),
        additionalData: encoder.encode(FORMAT) }, kek, b64decode(header.wrapped_key));
    } catch (err) {
      throw new Error("该私钥不是加密此投标文件所用证书的私钥 (this key does not open this bid)");
    }
  }

  // Canonical JSON as engine/seal.py writes it: keys sorted, no spaces, UTF-8.
  function canonical(value) {
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (value !== null && typeof value === "object") {
      return "{" + Object.keys(value).sort().map(function (k) {
        return JSON.stringify(k) + ":" + canonical(value[k]);
      }).join(",") + "}";
    }
    return JSON.stringify(value);
  }

  function hex(bytes) {
    return Array.from(new Uint8Array(bytes)).map(function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function priceText(text) {
    const match = /^\s*([0-9]{1,13})(?:\.([0-9]{1,2}))?\s*$/.exec(text);
    if (!match || Number(text) <= 0) throw new Error("投标报价须为正数，最多两位小数 (a positive price, at most 2 decimals)");
    return String(BigInt(match[1])) + "." + (match[2] || "").padEnd(2, "0");
  }

  // Seal a bid in the browser, exactly as engine/seal.py does; return the package bytes.
  async function sealBid(options) {
    const subtle = window.crypto.subtle;
    const random = function (n) { return window.crypto.getRandomValues(new Uint8Array(n)); };
    const body = { price: priceText(options.price), filename: options.filename, media_type: options.mediaType,
      metadata: {}, document: b64encode(options.document) };
    const plaintext = concat(random(32), encoder.encode(canonical(body)));
    const contentKey = random(32);
    const contentNonce = random(12);
    const aad = encoder.encode(canonical({ format: FORMAT, project_code: options.projectCode,
      bidder_uscc: options.bidderUscc }));
    const aesKey = await subtle.importKey("raw", contentKey, "AES-GCM", false, ["encrypt"]);
    const ciphertext = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: contentNonce,
      additionalData: aad }, aesKey, plaintext));
    const spki = b64decode(options.recipientSpki);
    const recipient = hex(await subtle.digest("SHA-256", spki));
    const recipientKey = await subtle.importKey("spki", spki, { name: "ECDH", namedCurve: "P-256" }, false, []);
    const ephemeral = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
    const point = new Uint8Array(await subtle.exportKey("raw", ephemeral.publicKey));
    const shared = await subtle.deriveBits({ name: "ECDH", public: recipientKey }, ephemeral.privateKey, 256);
    const hkdfKey = await subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    const kek = await subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: point,
      info: encoder.encode(WRAP_INFO + recipient) }, hkdfKey, { name: "AES-GCM", length: 256 }, false, ["encrypt"]);
    const wrapNonce = random(12);
    const wrapped = await subtle.encrypt({ name: "AES-GCM", iv: wrapNonce, additionalData: encoder.encode(FORMAT) },
      kek, contentKey);
    const header = {
      format: FORMAT, project_code: options.projectCode, bidder_uscc: options.bidderUscc,
      sealed_at: new Date().toISOString(), certificate_sha256: options.certificateSha256,
      recipient_key_sha256: recipient, ephemeral_public_key: b64encode(point), wrap_nonce: b64encode(wrapNonce),
      wrapped_key: b64encode(wrapped), content_nonce: b64encode(contentNonce),
      ciphertext_sha256: hex(await subtle.digest("SHA-256", ciphertext)), ciphertext_size: ciphertext.length,
      commitment: hex(await subtle.digest("SHA-256", plaintext)),
    };
    const signature = await webcrypto.signDer(options.keyPem, encoder.encode(canonical(header)));
    return encoder.encode(canonical({ header: header, signature: b64encode(signature),
      ciphertext: b64encode(ciphertext) }));
  }

  function readBytes(file) {
    return new Promise(function (resolve, reject) {
      const reader = new FileReader();
      reader.onload = function () { resolve(new Uint8Array(reader.result)); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsArrayBuffer(file);
    });
  }

  function setUpSealing(form) {
    const status = form.querySelector(".bid-seal-status");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      status.classList.remove("error");
      status.textContent = "正在本机加密并签名…";
      try {
        const documentFile = form.querySelector(".bid-document").files[0];
        const keyFile = form.querySelector(".bid-seal-key").files[0];
        if (!documentFile || !keyFile) throw new Error("请选择投标文件和私钥文件");
        const pkg = await sealBid({
          price: form.querySelector(".bid-price").value, document: await readBytes(documentFile),
          filename: documentFile.name, mediaType: documentFile.type || "application/octet-stream",
          keyPem: await readText(keyFile), projectCode: form.dataset.projectCode, bidderUscc: form.dataset.bidderUscc,
          recipientSpki: form.dataset.recipientSpki, certificateSha256: form.dataset.certificateSha256,
        });
        // Hand the package to the ordinary upload form, so the submission is the same request either way.
        const upload = document.querySelector("form.bid-upload");
        const files = new DataTransfer();
        files.items.add(new File([pkg], "bid.sealed", { type: "application/json" }));
        upload.querySelector("input[name=package]").files = files.files;
        upload.querySelector(".device-fingerprint").value = deviceId();
        upload.submit();
      } catch (err) {
        status.textContent = err.message;
        status.classList.add("error");
      }
    });
  }

  function deviceId() {
    let id = window.localStorage.getItem("ggzy_device");
    if (!id) {
      id = window.crypto.randomUUID();
      window.localStorage.setItem("ggzy_device", id);
    }
    document.cookie = "ggzy_device=" + id + "; path=/; SameSite=Strict";
    return id;
  }

  function readText(file) {
    return new Promise(function (resolve, reject) {
      const reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsText(file);
    });
  }

  function setUpDecryption(form) {
    const status = form.querySelector(".bid-decrypt-status");
    const contentKey = form.querySelector(".bid-content-key");
    const keyFile = form.querySelector(".bid-key-file");
    form.addEventListener("submit", async function (event) {
      if (contentKey.value || !keyFile.files.length) return;  // a pasted content key goes as it is
      event.preventDefault();
      status.textContent = "正在本机解密…";
      try {
        const response = await fetch(form.dataset.packageUrl, { credentials: "same-origin" });
        if (!response.ok) throw new Error("无法读取投标文件 (HTTP " + response.status + ")");
        const key = await unwrapKey(await response.json(), await readText(keyFile.files[0]));
        contentKey.value = b64encode(key);
        keyFile.value = "";  // the key file itself is never submitted
        status.textContent = "内容密钥已算出，正在提交…";
        form.submit();
      } catch (err) {
        status.textContent = err.message;
        status.classList.add("error");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const id = deviceId();
    document.querySelectorAll(".device-fingerprint").forEach(function (input) { input.value = id; });
    document.querySelectorAll("form.bid-decrypt").forEach(setUpDecryption);
    document.querySelectorAll("form.bid-seal").forEach(setUpSealing);
  });

  window.ggzyBids = { unwrapKey: unwrapKey, sealBid: sealBid };
})();
