// outrigger example override of Alertmanager's UI script (served by `exact: /script.js`).
// Replace this file (in Kubernetes: the ConfigMap mounted on the html root) with your patched
// copy of Alertmanager's script.js. This stand-in renders the status and silences from the API
// and marks the page so you can see the override is in effect.
(function () {
  "use strict";
  var OVERRIDE = "outrigger-override";
  function el(tag, text) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function render(status, silences) {
    var root = document.getElementById("app") || document.body;
    root.setAttribute("data-script", OVERRIDE);
    var h = el("h1", "Alertmanager (patched UI)");
    h.id = "override-banner";
    root.appendChild(h);
    var version = status && status.versionInfo ? status.versionInfo.version : "unknown";
    var cluster = status && status.cluster ? status.cluster.status : "unknown";
    var p = el("p", "version " + version + ", cluster " + cluster);
    p.id = "status";
    root.appendChild(p);
    var ul = el("ul");
    ul.id = "silences";
    (silences || []).forEach(function (s) {
      var m = (s.matchers || []).map(function (x) {
        return x.name + (x.isEqual === false ? "!" : "") + (x.isRegex ? "=~" : "=") + x.value;
      });
      ul.appendChild(el("li", "{" + m.join(", ") + "} " + (s.comment || "")));
    });
    root.appendChild(ul);
  }
  function get(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      return r.json();
    });
  }
  Promise.all([get("/api/v2/status"), get("/api/v2/silences")])
    .then(function (r) { render(r[0], r[1]); })
    .catch(function (e) {
      var root = document.getElementById("app") || document.body;
      root.setAttribute("data-script", OVERRIDE);
      root.appendChild(el("p", "API error: " + e));
    });
})();
