/* The instance page: the pinned version's diagram in bpmn-js's NavigatedViewer, with the instance's progress marked. */
(function () {
  "use strict";

  var MARKERS = { done: "ggzy-done", active: "ggzy-active", error: "ggzy-error", cancelled: "ggzy-cancelled" };

  function mark(viewer, data) {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    var overlays = viewer.get("overlays");
    Object.keys(MARKERS).forEach(function (kind) {
      (data.markers[kind] || []).forEach(function (id) {
        if (registry.get(id)) canvas.addMarker(id, MARKERS[kind]);
      });
    });
    var taken = new Set((data.markers.flows || []).map(function (pair) { return pair[0] + "\n" + pair[1]; }));
    registry.filter(function (element) {
      var flow = element.businessObject;
      return element.type === "bpmn:SequenceFlow" && flow.sourceRef && flow.targetRef
        && taken.has(flow.sourceRef.id + "\n" + flow.targetRef.id);
    }).forEach(function (element) { canvas.addMarker(element.id, MARKERS.done); });
    (data.timers || []).forEach(function (timer) {
      if (!registry.get(timer.element)) return;
      var label = document.createElement("div");
      label.className = "ggzy-timer-overlay";
      label.textContent = timer.label;
      overlays.add(timer.element, "ggzy-timer", { position: { top: 10, left: 42 }, html: label });
    });
  }

  function show(container, data) {
    var viewer = new window.BpmnJS({ container: container });
    fetch(data.url, { credentials: "same-origin", headers: { Accept: "application/xml" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (xml) { return viewer.importXML(xml); })
      .then(function () {
        mark(viewer, data);
        viewer.get("canvas").zoom("fit-viewport", "auto");
        container.dataset.ready = "true";
      })
      .catch(function (err) {
        var message = document.createElement("p");
        message.className = "error";
        message.setAttribute("role", "alert");
        message.textContent = data.messages.failed + " " + (err && err.message ? err.message : String(err));
        container.replaceChildren(message);
        container.dataset.ready = "error";
      });
  }

  var container = document.getElementById("instance-diagram");
  var tag = document.getElementById("instance-data");
  if (container && tag && window.BpmnJS) show(container, JSON.parse(tag.textContent));
})();
