/* The in-browser editor: bpmn-js Modeler, dmn-js decision-table editor, or a text area; deploys as a new version. */
(function () {
  "use strict";

  const admin = window.ggzyAdmin;
  const data = admin.readData("editor-data");
  const messages = data.messages;
  const canvas = document.getElementById("canvas");
  const textarea = document.getElementById("source");
  const result = document.getElementById("result");
  const deployButton = document.getElementById("deploy-button");
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  let modeler = null;
  let sourceMode = data.kind === "form";
  let dirty = false;

  function markDirty() { dirty = true; }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function table(headings, rows, rowClass) {
    const node = element("table", undefined, rowClass + "s");
    const head = node.createTHead().insertRow();
    headings.forEach(function (heading) { head.appendChild(element("th", heading)); });
    const body = node.createTBody();
    rows.forEach(function (cells) {
      const row = body.insertRow();
      row.className = rowClass;
      cells.forEach(function (cell) {
        const td = row.insertCell();
        if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      });
    });
    return node;
  }

  function link(href, text) {
    const node = element("a", text);
    node.href = href;
    return node;
  }

  function showOutcomes(outcomes) {
    result.replaceChildren(element("p", messages.deployed, "deployed"), table(
      [messages.kind, messages.key, messages.version, messages.status],
      outcomes.map(function (o) {
        return [messages.kinds[o.kind], link(o.history_url, o.key), o.url ? link(o.url, "v" + o.version) : "v" + o.version,
                element("span", messages.statuses[o.status], "badge " + o.status)];
      }), "outcome"));
  }

  function showProblems(problems) {
    result.replaceChildren(element("p", messages.refused, "error"), table(
      [messages.file, messages.line, messages.element, messages.reason],
      problems.map(function (p) { return [p.file, p.line, p.element ? element("code", p.element) : "", p.reason]; }),
      "problem"));
  }

  function showFailure(text) {
    result.replaceChildren(element("p", messages.failed + " " + text, "error"));
  }

  /* Track edits in every dmn-js view (each view has its own command stack). */
  function watchDmnViews(dmn) {
    const watched = new Set();
    dmn.on("views.changed", function () {
      const viewer = dmn.getActiveViewer();
      if (viewer && !watched.has(viewer)) {
        watched.add(viewer);
        viewer.get("eventBus").on("commandStack.changed", markDirty);
      }
    });
  }

  async function importSource(xml) {
    const activeKey = data.kind === "decision" && modeler.getActiveView() ? modeler.getActiveView().element.id : data.key;
    await modeler.importXML(xml);
    if (data.kind === "process") {
      modeler.get("canvas").zoom("fit-viewport");
    } else {
      await admin.openDecision(modeler, activeKey);
    }
  }

  async function currentSource() {
    if (sourceMode) return textarea.value;
    return (await modeler.saveXML({ format: true })).xml;
  }

  async function setMode(toSource) {
    if (toSource === sourceMode) return;
    try {
      if (toSource) {
        textarea.value = await currentSource();
      } else {
        await importSource(textarea.value);
      }
    } catch (err) {
      showFailure(messages.invalid_xml + " " + (err && err.message ? err.message : err));
      return;
    }
    sourceMode = toSource;
    textarea.hidden = !toSource;
    canvas.hidden = toSource;
    const switcher = document.getElementById("dmn-views");
    if (switcher) switcher.classList.toggle("disabled", toSource);
    document.getElementById("mode-source").setAttribute("aria-pressed", String(toSource));
    document.getElementById("mode-source").classList.toggle("outline", !toSource);
    document.getElementById("mode-visual").setAttribute("aria-pressed", String(!toSource));
    document.getElementById("mode-visual").classList.toggle("outline", toSource);
  }

  async function deploy() {
    deployButton.setAttribute("aria-busy", "true");
    deployButton.disabled = true;
    result.replaceChildren(element("p", messages.deploying));
    try {
      const response = await fetch(data.deployUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken, Accept: "application/json" },
        body: JSON.stringify({ xml: await currentSource() }),
      });
      const isJson = (response.headers.get("Content-Type") || "").includes("application/json");
      const body = isJson ? await response.json() : null;
      if (body && body.outcomes) {
        dirty = false;
        showOutcomes(body.outcomes);
      } else if (body && body.problems) {
        showProblems(body.problems);
      } else {
        showFailure((body && body.error) || response.status + " " + response.statusText);
      }
    } catch (err) {
      showFailure(err && err.message ? err.message : String(err));
    } finally {
      deployButton.removeAttribute("aria-busy");
      deployButton.disabled = false;
    }
  }

  async function start() {
    if (data.kind === "form") {
      textarea.addEventListener("input", markDirty);
      return;
    }
    if (data.kind === "process") {
      modeler = new window.BpmnJS({ container: canvas });
      modeler.on("commandStack.changed", markDirty);
    } else {
      modeler = new window.DmnJS({ container: canvas });
      admin.dmnViewSwitch(modeler, document.getElementById("dmn-views"), messages);
      watchDmnViews(modeler);
    }
    textarea.addEventListener("input", markDirty);
    document.getElementById("mode-visual").addEventListener("click", function () { setMode(false); });
    document.getElementById("mode-source").addEventListener("click", function () { setMode(true); });
    try {
      await importSource(data.source);
    } catch (err) {
      showFailure(messages.render_failed + " " + (err && err.message ? err.message : err));
    }
  }

  deployButton.addEventListener("click", deploy);
  window.addEventListener("beforeunload", function (event) {
    if (dirty) {
      event.preventDefault();
      event.returnValue = messages.unsaved;
    }
  });
  start();
})();
