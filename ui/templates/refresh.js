(function () {
  "use strict";
  var slot = document.getElementById("refresh");
  if (!slot) { return; }
  var key = "trueup-refresh", off = false;
  try { off = window.localStorage.getItem(key) === "off"; } catch (e) { /* no storage: refresh */ }
  var label = document.createElement("label");
  var box = document.createElement("input");
  box.type = "checkbox";
  box.id = "refresh-toggle";
  box.checked = !off;
  label.appendChild(box);
  label.appendChild(document.createTextNode(" refresh every 10 s"));
  slot.appendChild(label);
  var timer = null;
  function arm() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    if (box.checked) { timer = window.setTimeout(function () { window.location.reload(); }, 10000); }
  }
  box.addEventListener("change", function () {
    try { window.localStorage.setItem(key, box.checked ? "on" : "off"); } catch (e) { /* kept for this page only */ }
    arm();
  });
  arm();
})();
