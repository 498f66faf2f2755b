/* Administration pages: the bpmn-js / dmn-js viewers, the diff2html view, and helpers editor.js reuses. */
(function () {
  "use strict";

  function readData(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function showError(node, prefix, err) {
    node.textContent = prefix + " " + (err && err.message ? err.message : String(err));
    node.hidden = false;
  }

  /* Keep a row of buttons that switches a dmn-js instance between its DRD and its decisions. */
  function dmnViewSwitch(dmn, switcher, messages) {
    function label(view) {
      if (view.type === "drd") return messages.drd;
      const name = view.element.name || view.element.id;
      return view.type === "decisionTable" ? name + " · " + messages.decision_table : name;
    }
    dmn.on("views.changed", function (event) {
      switcher.replaceChildren();
      event.views.forEach(function (view) {
        const button = document.createElement("button");
        const active = event.activeView && event.activeView.element === view.element;
        button.type = "button";
        button.className = active ? "secondary" : "secondary outline";
        button.setAttribute("aria-pressed", String(active));
        button.textContent = label(view);
        button.addEventListener("click", function () { dmn.open(view); });
        switcher.appendChild(button);
      });
      switcher.hidden = event.views.length < 2;
    });
  }

  /* Open the decision `key` (else the first decision) rather than the DRD. */
  function openDecision(dmn, key) {
    const views = dmn.getViews().filter(function (view) { return view.type !== "drd"; });
    const wanted = views.find(function (view) { return view.element.id === key; }) || views[0];
    return wanted ? dmn.open(wanted) : Promise.resolve();
  }

  async function showDiagram(data) {
    const canvas = document.getElementById("canvas");
    const error = document.getElementById("canvas-error");
    try {
      if (data.kind === "process") {
        const viewer = new window.BpmnJS({ container: canvas });
        await viewer.importXML(data.source);
        viewer.get("canvas").zoom("fit-viewport");
      } else {
        const viewer = new window.DmnJS({ container: canvas });
        dmnViewSwitch(viewer, document.getElementById("dmn-views"), data.messages);
        await viewer.importXML(data.source);
        await openDecision(viewer, data.key);
      }
    } catch (err) {
      showError(error, data.messages.render_failed, err);
    }
  }

  function showDiff(data) {
    const target = document.getElementById("diff-view");
    if (!target || !window.Diff2HtmlUI) return;
    const ui = new window.Diff2HtmlUI(target, data.diff, {
      drawFileList: false, matching: "lines", outputFormat: "side-by-side", highlight: false,
    });
    ui.draw();
  }

  window.ggzyAdmin = { readData: readData, showError: showError, dmnViewSwitch: dmnViewSwitch,
                       openDecision: openDecision };

  const data = readData("admin-data");
  if (!data) return;
  if (data.diff !== undefined) {
    showDiff(data);
  } else {
    showDiagram(data);
  }
})();
